"""calibrate --target-precision, calibration list / remove-rule, run, status and evaluate through the
CLI, on real runs of the bundled model over the committed samples."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

import lid_dask
from lid_dask.cli.runs import print_summary
from lid_dask.ledger import Ledger
from lid_dask.runs import Run, Summary
from tests.evaluation.test_workflow import execute

SAMPLES = Path(lid_dask.__file__).parent / "samples"


def cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lid_dask.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def said(out: subprocess.CompletedProcess) -> str:
    """stdout and stderr with the console's line wrapping undone."""
    return " ".join((out.stdout + out.stderr).split())


@pytest.mark.slow
def test_an_accept_rule_from_calibrate_is_listed_applied_shown_and_removed(tmp_path):
    manifest = pd.read_csv(SAMPLES / "manifest.csv")
    uris = [str(SAMPLES / uri) for uri in manifest["uri"]]
    pd.DataFrame({"uri": uris, "language": manifest["language"]}).to_csv(tmp_path / "labels.csv", index=False)
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    execute(Run.create("labelled", uris, db))
    ledger = Ledger(db)
    calibrate = ("calibrate", "--labels", "labels.csv", "--dataset", "samples", "--run", "labelled", "--db", db)

    bad = cli(*calibrate, "--target-precision", "1.5", cwd=tmp_path)
    assert bad.returncode == 2 and "--target-precision: 1.5 is not strictly between 0 and 1" in bad.stderr
    assert ledger.evaluations.calibrations_frame().empty  # refused before anything was fitted

    few = cli(*calibrate, "--target-precision", "0.99", cwd=tmp_path)
    assert few.returncode == 0, few.stderr
    calibration = ledger.evaluations.latest_calibrations(["whisper-ct2"]).get("whisper-ct2")
    under = f"calibration {calibration['id']}" if calibration else "its own"
    for text in (f"accept rule for 99% precision at 95% confidence, on 21 labelled files (21 that no other reason "
                 f"sends to review), with the confidence new runs give (whisper-ct2: {under}):",
                 "nothing can be promised: too few labelled files: 21 could be accepted, and promising 99% at 95% "
                 "confidence takes at least 299 accepted files without a single error",
                 "stored as accept rule 1; new runs of whisper-ct2 send every answer to review "
                 "(`lid-dask calibration remove-rule 1` drops it)"):
        assert text in said(few)

    fitted = cli(*calibrate, "--target-precision", "0.8", "--confidence-level", "0.5", cwd=tmp_path)
    assert fitted.returncode == 0, fitted.stderr
    promise = re.search(r"accept answers of confidence at least ([0-9.]+): (\d+) of 21 labelled files \([0-9.]+%\) "
                        r"accepted, (\d+) of them wrong; with 50% confidence, at least [0-9.]+% of what new runs "
                        r"accept is right \(promised: 80%\)", said(fitted))
    assert promise, said(fitted)
    threshold = float(promise[1])
    assert 4 <= int(promise[2]) < 21 and int(promise[3]) <= int(promise[2]) * 0.2
    assert ("stored as accept rule 2; new runs of whisper-ct2 accept those answers and send the rest to review"
            in said(fitted))

    listed = cli("calibration", "list", "--db", db, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines() if "% at " in line}
    assert set(rows) == {"1", "2"}
    assert re.search(r"99% at 95% +nothing +0/21 ", rows["1"]) and not rows["1"].rstrip().endswith("yes")
    assert re.search(rf"80% at 50% +≥ {threshold:g} +{promise[2]}/21 ", rows["2"])
    assert rows["2"].rstrip().endswith("yes")

    # a later run of the same model applies rule 2: its summary, status and evaluation say so
    archive = [uris[i] for i in range(0, 21, 5)]
    ran = cli("run", *archive, "--name", "archive", "--db", db, "--workers", "1", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    answers = Run("archive", db).results()
    accepted = int((~answers["needs_review"].astype(bool)).sum())
    reasons = {r for text in answers["review_reasons"].dropna() for r in text.split(",") if r}
    assert reasons <= {"below_accept_threshold"}
    line = (f"accepted without review: {accepted} of 5 finished files ({accepted / 5:.1%}); accept rule 2 promises "
            "at least 80% of them right, with 50% confidence")
    assert line in said(ran)
    status = cli("status", "archive", "--db", db, cwd=tmp_path)
    assert status.returncode == 0 and line in said(status)
    evaluated = cli("evaluate", "--labels", "labels.csv", "--run", "archive", "--db", db, "--report", "report",
                    cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert (f"review rule: accept rule 2: no other review reason, confidence at least {threshold:g} (80% precision "
            "at 50% confidence, fitted on samples)") in said(evaluated)
    assert f"accepted without review: {accepted} of 5 files ({accepted / 5:.1%}), precision " in said(evaluated)
    assert "## Accepted without review" in (tmp_path / "report" / "report.md").read_text()
    assert (tmp_path / "report" / "risk_coverage.png").is_file()

    removed = cli("calibration", "remove-rule", "2", "--db", db, cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    now = "the default review rule" if calibration else "accept rule 1"  # rule 1 holds only under its calibration
    assert (f"removed accept rule 2 of whisper-ct2 (fitted on samples); new runs of whisper-ct2 apply {now}, runs "
            "already made keep theirs") in said(removed)
    again = cli("calibration", "remove-rule", "2", "--db", db, cwd=tmp_path)
    assert again.returncode == 2
    assert said(again) == "error: no accept rule 2 in the ledger (`lid-dask calibration list`)"
    ledger.engine.dispose()


def test_status_says_when_the_rule_in_a_runs_settings_was_refused():
    why = "accept rule 4 was fitted on other weights of whisper-ct2 (000000000000, loaded 0123456789ab)"
    console = Console(record=True, width=300)
    print_summary(Summary("r", [("en", 3, 30.0)], 1, {"low_confidence": 1}, [], 3, None, why), console)
    text = console.export_text()
    assert f"{why}: refused, the default review rule applies" in text and "accepted without review" not in text
