"""evaluate / calibrate / review through the CLI, on real clips, a real cluster and a real ledger."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import pytest

from lid_dask.evaluation.calibration import split_by_uri
from lid_dask.ledger import Ledger
from lid_dask.runs import Run


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
    assert "accuracy" in first.stdout and "whisper-ct2" in first.stdout
    assert "consensus" not in first.stdout  # one model: its row is not shown again as the consensus
    assert {"report.md", "report.html"} <= {p.name for p in (tmp_path / "report").iterdir()}
    assert list((tmp_path / "report").glob("*.png"))
    ledger = Ledger(db)
    evaluations = ledger.evaluations.evaluations_frame("tiny")
    assert len(evaluations) == 1
    assert evaluations.iloc[0].summary["consensus"]["accuracy"] == pytest.approx(23 / 24)
    run_name = ledger.list_runs()[0].name
    report = (tmp_path / "report" / "report.md").read_text()
    for line in (f"- run: {run_name}", "- models: whisper-ct2:bundled", "- labels: tiny", "- labelled files: 24",
                 "1 files got another language than their label", f"| {tmp_path / 'en0.wav'} | fr | en | "):
        assert line in report
    assert "| consensus |" not in report

    # A "new model" that answers nothing useful: the consensus answer regresses on the same files.
    second = cli("evaluate", "--labels", "labels.csv", "-m", "null", "--db", db, "--workers", "1",
                 "--dataset", "tiny", "--fail-on-regression", "0.02", cwd=tmp_path)
    assert second.returncode == 3, second.stdout + second.stderr
    assert "regression" in second.stdout and "mcnemar" in second.stdout.lower()
    assert len(ledger.evaluations.evaluations_frame("tiny")) == 2
    same = cli("evaluate", "--labels", "labels.csv", "--run", run_name, "--db", db, "--dataset", "tiny-again",
               "--fail-on-regression", "0.02", cwd=tmp_path)
    assert same.returncode == 0, same.stdout + same.stderr

    # Labels that agree with the answers where the calibration is fitted and contradict them where it
    # is checked: it raises a confidence that the held-out files say was already too high.
    answers = Run(run_name, ledger=ledger).results().set_index("uri")["language"]
    held_out = set(split_by_uri(pd.DataFrame({"uri": answers.index}), test_fraction=0.3, salt="calibrate:worse")[1].uri)
    pd.DataFrame({"uri": answers.index, "language": [{"en": "de", "de": "en"}[a] if uri in held_out else a
                                                     for uri, a in answers.items()]}).to_csv(tmp_path / "worse.csv")
    calibrate = ("calibrate", "--labels", "worse.csv", "--dataset", "worse", "--run", run_name, "--db", db)
    kept = cli(*calibrate, cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    assert "whisper-ct2: kept out, held-out ECE" in kept.stdout and "apply none; --force stores it" in kept.stdout
    assert "no calibration stored" in cli("calibration", "list", "--db", db, cwd=tmp_path).stdout
    forced = cli(*calibrate, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "whisper-ct2: stored as calibration 1, held-out ECE" in forced.stdout and "forced" in forced.stdout
    listed = cli("calibration", "list", "--db", db, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    row = [line for line in listed.stdout.splitlines() if "whisper-ct2" in line]
    assert len(row) == 1 and all(cell in row[0] for cell in ("1", "platt", "worse", "%", "yes"))
    assert "no calibration of other stored" in cli("calibration", "list", "--model", "other", "--db", db,
                                                   cwd=tmp_path).stdout
    removed = cli("calibration", "remove", "1", "--db", db, cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    assert "removed calibration 1 of whisper-ct2" in removed.stderr and "apply no calibration" in removed.stderr
    assert ledger.evaluations.latest_calibrations(["whisper-ct2"]) == {}
    again = cli("calibration", "remove", "1", "--db", db, cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        "error: no calibration 1 in the ledger (`lid-dask calibration list`)"]

    exported = cli("review", "export", run_name, "-o", "queue/review.csv", "--storage-options",
                   '{"auto_mkdir": true}', "--db", db, cwd=tmp_path)  # the folder exists only if the option got there
    assert exported.returncode == 0, exported.stderr
    queue = pd.read_csv(tmp_path / "queue" / "review.csv", dtype=str)
    assert {"uri", "listen", "reviewed_language"} <= set(queue.columns)
    queue = pd.DataFrame({"uri": [str(tmp_path / "en0.wav")], "listen": [""], "reviewed_language": ["en"],
                          "reviewer": ["ana"]})
    queue.to_csv(tmp_path / "reviewed.csv", index=False)
    imported = cli("review", "import", "reviewed.csv", "--dataset", "reviewed", "--db", db, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    again = cli("evaluate", "--labels", "db:reviewed", "--run", run_name, "--db", db, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert ledger.evaluations.evaluations_frame("db:reviewed").iloc[0].summary["consensus"]["n"] == 1


def test_labels_that_name_no_file_are_one_line_before_anything_runs(tmp_path):
    done = cli("evaluate", "--labels", str(tmp_path / "no-such-folder"), "-m", "whisper-ct2:bundled",
               "--db", f"sqlite:///{tmp_path / 'ledger.db'}", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: no labelled files in {tmp_path / 'no-such-folder'} (split 'test'): check the path and --label-format"]
    assert not Ledger(f"sqlite:///{tmp_path / 'ledger.db'}").list_runs()  # no run was made
