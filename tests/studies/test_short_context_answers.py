"""The label-free check of which languages Whisper's short context over-answers."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from lid_dask.audio import load_windows
from lid_dask.models import load_model
from lid_dask.windows import WindowPlan
from studies.short_context_answers import context_moves

ROOT = Path(__file__).resolve().parents[2]  # `python -m studies.short_context_answers` runs from here
SAMPLES = ROOT / "lid_dask" / "samples"


def test_moves_and_ratios_match_the_two_contexts_run_by_hand():
    files = sorted(str(p) for p in SAMPLES.glob("*-festival-*"))[:4]
    to, away, ratio, seen = context_moves(files, "whisper-ct2:bundled", 10.0)
    short, full = load_model("whisper-ct2:bundled?recheck="), load_model("whisper-ct2:bundled?context=30&recheck=")
    per_file = [load_windows(f, WindowPlan()).samples for f in files]
    a = np.concatenate([short.predict(windows) for windows in per_file])  # file by file, as the script
    b = np.concatenate([full.predict(windows) for windows in per_file])
    pairs = [(short.labels[i], short.labels[j]) for i, j in zip(a.argmax(1), b.argmax(1)) if i != j]
    assert seen == len(a)  # every sample window has speech
    assert to == Counter(x for x, _ in pairs) and away == Counter(y for _, y in pairs)
    la = short.labels.index("la")
    assert np.isclose(ratio["la"], b[:, la].sum() / a[:, la].sum(), rtol=1e-4)


def test_the_command_prints_its_table_and_a_recheck_suggestion():
    done = subprocess.run([sys.executable, "-m", "studies.short_context_answers",
                           "--manifest", str(SAMPLES / "manifest.csv"), "--limit", "3"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert re.search(r"\b3 speech windows; \d answered differently at 10 s and 30 s", out), out
    assert "recheck=" in out or "no language reaches p < 0.01" in out
