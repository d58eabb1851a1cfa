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
    from tests.ledger.test_ledger import ok

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(url)
    info = ledger.create_run("one-batch", {})
    ledger.register(info.id, [f"/a/{i}.wav" for i in range(5)])
    ledger.record([ok(c) for c in ledger.claim(info.id, "o", 3, 60)], "o", 3, 30)
    ledger.engine.dispose()

    done = cli("status", "one-batch", "--db", url)
    assert done.returncode == 0, done.stderr
    assert "5 files, 2 to go, pace not measured yet" in " ".join(done.stdout.split())


def test_read_only_commands_create_nothing_where_there_is_no_ledger(tmp_path):
    missing = tmp_path / "nowhere" / "ledger.db"
    url = f"sqlite:///{missing}"
    for command in (["status"], ["status", "r"], ["export", "r", "-o", str(tmp_path / "x.csv")],
                    ["review", "export", "r", "-o", str(tmp_path / "review.csv")], ["retry", "r"],
                    ["calibration", "list"], ["calibration", "remove", "1"]):
        out = cli(*command, "--db", url)
        assert out.returncode == 2, (command, out.stderr)
        assert f"no ledger at {url}: no such file" in " ".join(out.stderr.split()), command
    assert not missing.parent.exists() and list(tmp_path.iterdir()) == []


def test_read_only_commands_never_create_or_upgrade_a_schema(pg_url):
    import sqlalchemy as sa

    from lid_dask.ledger import Ledger
    from tests.conftest import PG_ADMIN

    empty = cli("status", "--db", pg_url)
    assert empty.returncode == 2 and "has no lid-dask tables" in empty.stderr
    assert sa.inspect(sa.create_engine(pg_url)).get_table_names() == []
    admin = sa.create_engine(PG_ADMIN)
    before = sa.inspect(admin).get_table_names()
    no_name = cli("status", "--db", PG_ADMIN.rsplit("/", 1)[0])
    assert no_name.returncode == 2 and "names no database" in no_name.stderr
    assert sa.inspect(admin).get_table_names() == before  # the shared `postgres` database is untouched
    admin.dispose()

    old = Ledger(pg_url, migrate=False)
    old.migrate("0002")
    stale = cli("status", "--db", pg_url)
    assert stale.returncode == 2 and "has schema 0002" in stale.stderr and "lid-dask db upgrade" in stale.stderr
    assert old.schema_revision() == "0002"
    assert cli("db", "upgrade", "--db", pg_url).returncode == 0
    assert old.schema_revision() == "0004"
    listed = cli("status", "--db", pg_url)
    assert listed.returncode == 0, listed.stderr
    old.engine.dispose()


def test_export_refuses_a_vanishing_output_and_keeps_a_run_name_from_steering_the_path(tmp_path):
    from lid_dask.runs import Run

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Run.create("../../escape", ["/audio/a.wav"], db=url, models="null")
    work = tmp_path / "work" / "here"
    work.mkdir(parents=True)
    vanishing = cli("export", "../../escape", "-o", "memory://x.parquet", "--db", url)
    assert vanishing.returncode == 2 and "vanishes when this process ends" in vanishing.stderr
    out = subprocess.run([sys.executable, "-m", "lid_dask.cli", "export", "../../escape", "--db", url],
                         capture_output=True, text=True, timeout=300, cwd=work)
    assert out.returncode == 0, out.stderr
    assert [p.name for p in work.iterdir()] == ["_.._escape.parquet"]
    assert {p.name for p in tmp_path.iterdir()} - {"ledger.db-wal", "ledger.db-shm"} == {"ledger.db", "work"}


def test_a_database_that_never_answered_fails_at_once_in_one_line():
    import time

    started = time.monotonic()
    out = cli("status", "--db", "postgresql+psycopg://postgres@127.0.0.1:1/lid")
    assert out.returncode == 2 and "cannot open the ledger at postgresql+psycopg://postgres@127.0.0.1:1/lid" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and time.monotonic() - started < 20


def test_outputs_a_person_reads(audio_dir, tmp_path):
    """The format follows the output's name; a table fits 80 columns with its headers whole; a file
    without an answer has no confidence; --version answers."""
    target = tmp_path / "results.csv"
    long_name = tmp_path / ("a-very-long-recording-name-from-the-archive-" * 2 + "0001.wav")
    long_name.write_bytes((audio_dir / "en.wav").read_bytes())
    out = cli("identify", str(long_name), str(tmp_path / "missing.wav"), "-o", str(target), "--no-progress")
    assert out.returncode == 0, out.stderr
    frame = pd.read_csv(target)
    assert frame.language[0] == "en" and pd.isna(frame.language[1])
    assert frame.confidence.isna().tolist() == [False, True]
    table = cli("identify", str(long_name), str(tmp_path / "missing.wav"), "--no-progress").stdout
    assert max(len(line) for line in table.splitlines()) <= 80
    assert all(header in table for header in ("file", "language", "conf.", "agreement", "notes"))
    assert "…" in table and "0001.wav" in table  # the name shortened in the middle, its end kept
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("lid-dask ")


def test_exported_times_carry_their_time_zone(tmp_path):
    from lid_dask.ledger import Ledger
    from tests.ledger.test_ledger import ok

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(url)
    info = ledger.create_run("tz", {})
    ledger.register(info.id, ["/a/0.wav"])
    ledger.record([ok(c) for c in ledger.claim(info.id, "o", 1, 60)], "o", 3, 30)
    ledger.engine.dispose()
    assert cli("export", "tz", "-o", str(tmp_path / "tz.csv"), "--db", url).returncode == 0
    assert pd.read_csv(tmp_path / "tz.csv").finished_at[0].endswith("+00:00")
