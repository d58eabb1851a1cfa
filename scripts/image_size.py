"""Estimate the Docker image's Python layer from requirements/image.lock, without Docker.

For every locked package it picks the wheel pip would install in the image (CPython 3.12, Linux
x86_64, glibc 2.39) among the files whose sha256 the lock lists, and sums their sizes as the
registry reports them (PEP 691 JSON of the simple index, which carries sizes). Wheels are zip files,
so this is about what the layer weighs compressed; pass --venv to add the size of a venv installed
from the lock (tests/test_image.py makes one), which is what the layer holds unpacked.

    .venv/bin/python scripts/image_size.py [--lock requirements/image.lock] [--venv PATH] [--top 15]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[1]
INDEX = os.environ.get("LID_DASK_SIMPLE_INDEX", "https://pypi.org/simple")
PYTHON = (3, 12)
GLIBC = (2, 39)


def target_tags(python=PYTHON, glibc=GLIBC, arch="x86_64") -> list:
    """The wheel tags the image's pip accepts, most preferred first."""
    platforms = [f"manylinux_{glibc[0]}_{minor}_{arch}" for minor in range(glibc[1], 4, -1)]
    platforms += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}", f"linux_{arch}"]
    abi = f"cp{python[0]}{python[1]}"
    return [*cpython_tags(python, [abi], platforms), *compatible_tags(python, abi, platforms)]


def parse_lock(text: str) -> dict[str, tuple[str, set[str]]]:
    """{name: (version, {sha256, ...})} from a `--generate-hashes` requirements file."""
    locked: dict[str, tuple[str, set[str]]] = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9_.\-]+)==([^\s\\;]+)", entry)
        if match:
            locked[canonicalize_name(match[1])] = (match[2], set(re.findall(r"sha256:([0-9a-f]{64})", entry)))
    return locked


def choose_wheel(files: list[dict], hashes: set[str], tags: list) -> dict | None:
    """The best-ranked wheel among `files` (PEP 691 entries) whose sha256 the lock allows."""
    rank = {tag: i for i, tag in enumerate(tags)}
    best, best_rank = None, len(rank)
    for entry in files:
        if not entry["filename"].endswith(".whl") or entry.get("hashes", {}).get("sha256") not in hashes:
            continue
        file_rank = min((rank.get(tag, len(rank)) for tag in parse_wheel_filename(entry["filename"])[3]),
                        default=len(rank))
        if file_rank < best_rank:
            best, best_rank = entry, file_rank
    return best


def _files(name: str) -> list[dict]:
    request = urllib.request.Request(f"{INDEX}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["files"]


def _tree_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=ROOT / "requirements" / "image.lock")
    parser.add_argument("--venv", type=Path, help="a venv installed from the lock: report its size too")
    parser.add_argument("--top", type=int, default=15, help="list the N largest wheels")
    args = parser.parse_args(argv)

    locked = parse_lock(args.lock.read_text())
    tags = target_tags()
    with ThreadPoolExecutor(8) as pool:
        indexes = dict(zip(locked, pool.map(_files, locked)))
    chosen, missing = {}, []
    for name, (version, hashes) in locked.items():
        wheel = choose_wheel(indexes[name], hashes, tags)
        if wheel is None:
            missing.append(f"{name}=={version}")
        else:
            chosen[name] = wheel
    total = sum(w["size"] for w in chosen.values())
    print(f"{len(chosen)} wheels for CPython {PYTHON[0]}.{PYTHON[1]} manylinux_{GLIBC[0]}_{GLIBC[1]}_x86_64: "
          f"{total / 1e6:,.0f} MB to download")
    for name, wheel in sorted(chosen.items(), key=lambda item: -item[1]["size"])[:args.top]:
        print(f"  {wheel['size'] / 1e6:8.1f} MB  {wheel['filename']}")
    if args.venv:
        print(f"venv installed from the lock: {_tree_size(args.venv) / 1e6:,.0f} MB on disk ({args.venv})")
    if missing:
        print("no wheel for the image's platform among the locked hashes: " + ", ".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
