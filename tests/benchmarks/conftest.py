"""Fixtures for the benchmark smoke tests: a tiny synthetic set, and running a benchmark module."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # `python -m benchmarks.<name>` runs from here


def run_module(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m <module> ARGS` from the repository root; fails the test, with the output's end,
    unless it exits 0."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"python -m {module} {' '.join(args)} exited {done.returncode}:\n"
                    f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """The manifest of a tiny synthetic set built by `python -m datasets.build_synthetic` (about
    10 s): 4 Festival clips (en, cs), 1 espeak-ng clip (de) and one 30 s long file."""
    missing = [tool for tool in ("text2wave", "espeak-ng", "sox", "ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} required by the benchmark smoke tests; install them (see .ci/run)")
    out = tmp_path_factory.mktemp("tiny-synth")
    run_module("datasets.build_synthetic", "--out", str(out), "--festival-voices", "kal_diphone,czech_dita",
               "--festival-per-voice", "2", "--espeak-langs", "de", "--espeak-per-lang", "1",
               "--long", "1", "--long-minutes", "0.5", "--jobs", "2")
    manifest = out / "manifest.csv"
    with manifest.open(newline="", encoding="utf-8") as handle:
        kinds = [row["kind"] for row in csv.DictReader(handle)]
    assert kinds.count("clip") >= 3 and kinds.count("long") == 1, kinds
    return manifest
