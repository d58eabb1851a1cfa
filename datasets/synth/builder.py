"""Build a labelled synthetic speech set: plan, render in parallel, write the manifest.

The work is split into three parts (festival, espeak, long), each in its own folder, so
one part can be rebuilt (`only`) while the manifest keeps the rows of the others.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from .longform import plan_long, render_long
from .plan import DEFAULT, Profile, Slot, plan_language
from .render import render_clip
from .sentences import catalog_locales
from .voices import FESTIVAL_BY_NAME, espeak_voices, festival_installed

log = logging.getLogger(__name__)

PARTS = ("festival", "espeak", "long")
COLUMNS = (
    "uri", "language", "engine", "voice", "text", "codec", "container", "video", "quality",
    "sample_rate", "channels", "speed", "pitch", "noise", "snr_db", "duration_s", "kind",
    "prefix", "prefix_s", "split", "bytes", "sha256",
)  # fmt: skip
HOLDOUT_PERCENT = 30


def split_of(language: str, text: str) -> str:
    """dev or holdout, from a hash of language and text (not of voice or format).

    Renderings of one text always land on the same side, and the split never changes
    when clips are added or removed. Tune constants on dev only; report on holdout.
    """
    digest = hashlib.sha256(f"{language}\n{text}".encode()).digest()
    return "holdout" if int.from_bytes(digest[:4], "big") % 100 < HOLDOUT_PERCENT else "dev"


def part_of(row: dict) -> str:
    return "long" if row["kind"] == "long" else "festival" if row["engine"] == "festival" else "espeak"


def espeak_languages() -> list[str]:
    """Every language espeak-ng speaks that also has gettext catalogs here."""
    return [language for language in espeak_voices() if catalog_locales(language)]


@dataclass
class Result:
    rows: list[dict] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (clip, reason)


def read_manifest(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_manifest(path: Path, rows: Iterable[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda row: row["uri"]))


def _run(
    pool: ProcessPoolExecutor, jobs: list[tuple[str, Callable, tuple]], desc: str, unit: str, result: Result
) -> list:
    """Run (name, fn, args) jobs on `pool` with a progress bar; failures go to `result`."""
    if not jobs:
        return []
    futures: dict[Future, str] = {pool.submit(fn, *args): name for name, fn, args in jobs}
    values = []
    for future in tqdm(as_completed(futures), total=len(futures), desc=desc, unit=unit):
        try:
            values.append(future.result())
        except Exception as error:  # one bad file must not cost the build: log it, go on
            reason = f"{type(error).__name__}: {error}"
            if isinstance(error, subprocess.CalledProcessError) and error.stderr:
                reason += f": {error.stderr.decode(errors='replace')[-300:]}"
            log.warning("skipped %s: %s", futures[future], reason)
            result.failures.append((futures[future], reason))
    return values


def build(
    out: Path,
    festival: dict[str, int],
    espeak_langs: list[str],
    espeak_per_lang: int,
    long_files: int,
    long_minutes: float,
    seed: int = 0,
    jobs: int = 2,
    parts: Iterable[str] = PARTS,
    profile: Profile = DEFAULT,
) -> Result:
    """Build `parts` of the set into `out` and (re)write `out`/manifest.csv.

    festival: voice name -> number of clips; espeak_langs: ISO codes, espeak_per_lang
    clips each; long_files of long_minutes each (Festival speech).
    """
    parts = set(parts)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.csv"
    kept = []
    for row in read_manifest(manifest):
        if part_of(row) in parts:
            (out / row["uri"]).unlink(missing_ok=True)
        else:
            kept.append(row)
    if not profile.flat:
        for part in parts:
            shutil.rmtree(out / ("espeak-ng" if part == "espeak" else part), ignore_errors=True)

    result = Result()
    slots: list[Slot] = []
    if "festival" in parts:
        for name, count in festival.items():
            if not festival_installed(FESTIVAL_BY_NAME[name]):
                log.warning("Festival voice %s is not installed: skipped", name)
                result.failures.append((f"festival|{name}", "voice not installed"))
                continue
            language = FESTIVAL_BY_NAME[name].language
            slots += [Slot("festival", language, name, i, len(slots) + i) for i in range(count)]
    if "espeak" in parts:
        for language in espeak_langs:
            slots += [Slot("espeak-ng", language, "", i, len(slots) + i) for i in range(espeak_per_lang)]
    by_language: dict[str, list[Slot]] = defaultdict(list)
    for slot in slots:
        by_language[slot.language].append(slot)

    with ProcessPoolExecutor(max_workers=jobs) as pool, logging_redirect_tqdm():
        plan_jobs = [(lang, plan_language, (lang, group, profile, seed)) for lang, group in sorted(by_language.items())]
        planned = _run(pool, plan_jobs, "plan", "language", result)
        render_jobs = []
        if "long" in parts:  # the longest jobs first, so that they overlap with the clips
            render_jobs += [(s.uri, render_long, (s, out, seed)) for s in plan_long(long_files, long_minutes, seed)]
        for specs, skipped in planned:
            for reason in dict.fromkeys(reason for _, reason in skipped):
                log.warning("not planned: %d clip(s): %s", sum(r == reason for _, r in skipped), reason)
            result.failures += skipped
            render_jobs += [(s.uri, render_clip, (s, out)) for s in specs]
        result.rows = _run(pool, render_jobs, "render", "file", result)

    for row in result.rows:
        row["split"] = split_of(row["language"], row["text"])
    write_manifest(manifest, kept + result.rows)
    return result
