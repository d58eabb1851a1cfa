"""evaluate / calibrate / review through the CLI, on real clips, a real cluster and a real ledger."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import pytest

from lid_dask.ledger import Ledger


def cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lid_dask.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


@pytest.mark.slow
def test_evaluate_calibrate_review_loop(tmp_path, audio_dir):
    for i in range(12):
        shutil.copy(audio_dir / "en.wav", tmp_path / f"en{i}.wav")
        shutil.copy(audio_dir / "de.wav", tmp_path / f"de{i}.wav")
    labels = pd.DataFrame({"uri": [f"{lang}{i}.wav" for i in range(12) for lang in ("en", "de")],
                           "language": ["English", "deu"] * 12})  # names and ISO 639-3 normalise too
    labels.loc[0, "language"] = "fr"  # one wrong label
    labels.to_csv(tmp_path / "labels.csv", index=False)
    db = f"sqlite:///{tmp_path / 'ledger.db'}"

    first = cli("evaluate", "--labels", "labels.csv", "-m", "whisper-ct2:bundled", "--db", db, "--workers", "1",
                "--dataset", "tiny", "--report", "report", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "accuracy" in first.stdout and "consensus" in first.stdout
    assert {"report.md", "report.html"} <= {p.name for p in (tmp_path / "report").iterdir()}
    assert list((tmp_path / "report").glob("*.png"))
    ledger = Ledger(db)
    evaluations = ledger.evaluations.evaluations_frame("tiny")
    assert len(evaluations) == 1
    assert evaluations.iloc[0].summary["consensus"]["accuracy"] == pytest.approx(23 / 24)
    run_name = ledger.list_runs()[0].name

    # A "new model" that answers nothing useful: the consensus answer regresses on the same files.
    second = cli("evaluate", "--labels", "labels.csv", "-m", "null", "--db", db, "--workers", "1",
                 "--dataset", "tiny", "--fail-on-regression", "0.02", cwd=tmp_path)
    assert second.returncode == 3, second.stdout + second.stderr
    assert "regression" in second.stdout and "mcnemar" in second.stdout.lower()
    assert len(ledger.evaluations.evaluations_frame("tiny")) == 2
    same = cli("evaluate", "--labels", "labels.csv", "--run", run_name, "--db", db, "--dataset", "tiny-again",
               "--fail-on-regression", "0.02", cwd=tmp_path)
    assert same.returncode == 0, same.stdout + same.stderr

    calibrated = cli("calibrate", "--labels", "labels.csv", "--run", run_name, "--db", db, cwd=tmp_path)
    assert calibrated.returncode == 0, calibrated.stderr
    assert "held-out" in calibrated.stdout
    assert "whisper-ct2" in ledger.evaluations.latest_calibrations(["whisper-ct2"])

    exported = cli("review", "export", run_name, "-o", "review.csv", "--db", db, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    queue = pd.read_csv(tmp_path / "review.csv", dtype=str)
    assert {"uri", "listen", "reviewed_language"} <= set(queue.columns)
    queue = pd.DataFrame({"uri": [str(tmp_path / "en0.wav")], "listen": [""], "reviewed_language": ["en"],
                          "reviewer": ["ana"]})
    queue.to_csv(tmp_path / "reviewed.csv", index=False)
    imported = cli("review", "import", "reviewed.csv", "--dataset", "reviewed", "--db", db, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    again = cli("evaluate", "--labels", "db:reviewed", "--run", run_name, "--db", db, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert ledger.evaluations.evaluations_frame("db:reviewed").iloc[0].summary["consensus"]["n"] == 1
