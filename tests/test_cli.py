"""The `lid-dask` command: formats, exit codes, progress on stderr."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lid_dask.cli", *args], capture_output=True, text=True, timeout=300)


def test_jsonl_and_bad_files_do_not_fail_the_command(audio_dir, tmp_path):
    out = cli("identify", str(audio_dir / "en.wav"), str(tmp_path / "missing.wav"), "--format", "jsonl")
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["language"] for r in records] == ["en", None]
    assert records[1]["error_kind"] == "not_found"
    assert "identifying" in out.stderr  # the progress bar goes to stderr, never into the data


def test_csv_to_a_file_with_options(audio_dir, tmp_path):
    target = tmp_path / "out.csv"
    out = cli("identify", str(audio_dir / "de.wav"), "-f", "csv", "-o", str(target), "--languages", "de,en",
              "--windows", "first:1x8", "--vad", "energy", "--no-progress")
    assert out.returncode == 0, out.stderr
    frame = pd.read_csv(target)
    assert frame.loc[0, "language"] == "de" and frame.loc[0, "whisper-ct2.language"] == "de"


def test_table(audio_dir):
    out = cli("identify", str(audio_dir / "en.wav"), "--no-progress")
    assert out.returncode == 0 and "en.wav" in out.stdout and "single" in out.stdout


def test_the_command_itself_failing_is_non_zero(audio_dir):
    bad_model = cli("identify", str(audio_dir / "en.wav"), "--model", "no-such-backend")
    assert bad_model.returncode == 2 and "unknown model backend" in bad_model.stderr
    bad_plan = cli("identify", str(audio_dir / "en.wav"), "--windows", "sideways")
    assert bad_plan.returncode == 2 and "window strategy" in bad_plan.stderr
    assert cli("identify").returncode == 2  # argparse: no files


def test_status_says_when_the_pace_is_not_measured_yet(tmp_path):
    from lid_dask.ledger import Ledger
    from tests.test_ledger import ok

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(url)
    info = ledger.create_run("one-batch", {})
    ledger.register(info.id, [f"/a/{i}.wav" for i in range(5)])
    ledger.record([ok(c) for c in ledger.claim(info.id, "o", 3, 60)], "o", 3, 30)
    ledger.engine.dispose()

    done = cli("status", "one-batch", "--db", url)
    assert done.returncode == 0, done.stderr
    assert "5 files, 2 to go, pace not measured yet" in " ".join(done.stdout.split())
