"""Settings are checked before anything is stored or started: each mistake a user makes with
`lid-dask run` gets one clear message, and leaves no run, no file and no cluster behind."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
import sqlalchemy as sa

from lid_dask.runs import Run, RunConfigMismatch


def cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lid_dask.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def runs_in(db) -> list[str]:
    if not db.exists():
        return []
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as connection:
        names = [row.name for row in connection.execute(sa.text("SELECT name FROM runs"))]
        files = connection.execute(sa.text("SELECT count(*) FROM files")).scalar()
    engine.dispose()
    return names + (["(files without a run)"] if files and not names else [])


@pytest.mark.parametrize("options, message", [
    (["-l", "en,englsh"], "'englsh' is not a language code or name"),
    (["-l", "en,xh"], "no model answers xh"),
    (["-m", "whisper-ct2:bundled?compute=int8"], "unknown option 'compute' for whisper-ct2 (did you mean 'compute_type'?)"),
    (["-m", "whispr-ct2"], "unknown model backend 'whispr-ct2' (did you mean 'whisper-ct2'?)"),
    (["-m", "whisper-ct2:/no/such/folder"], "no model folder '/no/such/folder'"),
    (["-w", "sideways"], "unknown window strategy 'sideways'"),
    (["--vad", "loud"], "invalid choice: 'loud'"),
    (["--storage-options", "[1]"], "a JSON object is needed"),
    (["--storage-options", "{nope"], "not JSON"),
])
def test_a_bad_setting_registers_and_starts_nothing(samples_dir, tmp_path, options, message):
    db = tmp_path / "ledger.db"
    out = cli("run", str(samples_dir), "--db", f"sqlite:///{db}", "--no-progress", *options)
    assert out.returncode == 2, out.stderr
    assert message in " ".join(out.stderr.split())
    assert "Traceback" not in out.stderr and "dashboard: http" not in out.stderr  # no cluster was started
    assert runs_in(db) == []


def test_a_source_that_names_nothing_registers_nothing(tmp_path):
    db = tmp_path / "ledger.db"
    out = cli("run", str(tmp_path / "no-such-folder"), "--db", f"sqlite:///{db}", "--no-progress")
    assert out.returncode == 2 and "no such file, folder or prefix" in out.stderr
    assert runs_in(db) == []


def test_resuming_a_run_that_is_not_there_makes_none(samples_dir, tmp_path):
    """`lid-dask run --name X` resumes X: in a ledger without X (a typo, another --db) it used to
    make an empty X and start a cluster that had nothing to do."""
    db = tmp_path / "ledger.db"
    Run.create("podcasts", [str(samples_dir / "manifest.csv")], db=f"sqlite:///{db}", models="null",
               allowed_roots=[str(samples_dir)])
    for url in (f"sqlite:///{db}", f"sqlite:///{tmp_path / 'other.db'}"):
        out = cli("run", "--name", "podcast", "--db", url, "--no-progress")
        assert out.returncode == 2 and "to start run 'podcast', give its SOURCES" in " ".join(out.stderr.split())
        assert "dashboard: http" not in out.stderr
    assert runs_in(db) == ["podcasts"] and not (tmp_path / "other.db").exists()


def test_options_that_differ_from_an_existing_run_say_what_differs_and_how_to_go_on(samples_dir, tmp_path):
    db = tmp_path / "ledger.db"
    Run.create("podcasts", [str(samples_dir / "manifest.csv")], db=f"sqlite:///{db}", models="null",
               allowed_roots=[str(samples_dir)])
    out = cli("run", "--name", "podcasts", "--db", f"sqlite:///{db}", "-l", "en,de", "--no-progress")
    assert out.returncode == 2
    said = " ".join(out.stderr.split())
    assert "run 'podcasts' was made with other settings (languages: the run has none, given en,de)" in said
    assert "lid-dask config set podcasts KEY=VALUE" in said and "lid-dask delete podcasts --yes" in said
    with pytest.raises(RunConfigMismatch, match="models: the run has null, given whisper-ct2:bundled"):
        Run.create("podcasts", db=f"sqlite:///{db}", models="whisper-ct2:bundled")
    assert Run("podcasts", f"sqlite:///{db}").config["identify"]["models"] == ["null"]


def test_the_same_command_resumes_the_same_run_without_a_name(samples_dir, tmp_path):
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    first = Run.create(None, [str(samples_dir)], db=db, models="null")
    again = Run.create(None, [str(samples_dir)], db=db, models="null")
    other = Run.create(None, [str(samples_dir / "manifest.csv")], db=db, models="null")
    assert first.name == again.name and first.name.startswith("samples-") and again.added == 0
    assert other.name != first.name


def test_config_show_set_and_delete(samples_dir, tmp_path):
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    Run.create("r", [str(samples_dir / "en-festival-cmu_us_slt_arctic_hts-000.flac")], db=db, models="null")
    shown = cli("config", "show", "r", "--db", db)
    assert shown.returncode == 0 and '"models": [' in shown.stdout and '"null"' in shown.stdout
    assert cli("config", "set", "r", "batch_files=8", "device=cpu", "--db", db).returncode == 0
    config = Run("r", db).config
    assert config["batch_files"] == 8 and config["identify"]["device"] == "cpu"
    unsafe = cli("config", "set", "r", "models=[\"whisper-ct2:bundled\"]", "--db", db)
    assert unsafe.returncode == 2 and "models decide the answers and cannot change" in unsafe.stderr
    typo = cli("config", "set", "r", "batch_file=8", "--db", db)
    assert typo.returncode == 2 and "unknown setting 'batch_file' (did you mean 'batch_files'?)" in typo.stderr
    refused = cli("delete", "r", "--db", db)
    assert refused.returncode == 2 and "add --yes" in refused.stderr
    assert cli("delete", "r", "--yes", "--db", db).returncode == 0
    assert "no runs in" in cli("status", "--db", db).stdout


def test_typos_elsewhere_are_errors(samples_dir, tmp_path):
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    Run.create("r", [str(samples_dir)], db=db, models="null")
    retry = cli("retry", "r", "--kind", "netwrok", "--db", db)
    assert retry.returncode == 2 and "invalid choice: 'netwrok'" in retry.stderr
    with pytest.raises(ValueError, match="model_weights names no model of this configuration: whisper"):
        Run.create("other", [str(samples_dir)], db=db, consensus={"model_weights": {"whisper": 2.0}})
    with pytest.raises(ValueError, match="unknown setting 'langauges' \\(did you mean 'languages'\\?\\)"):
        Run.create("other", [str(samples_dir)], db=db, langauges=["en"])
    assert Run.create("string", [str(samples_dir)], db=db, models="null", languages="und").config[
        "identify"]["languages"] == ["und"]


@pytest.mark.parametrize("url, message", [
    ("foo", "'foo' is not a database URL; e.g. sqlite:///lid-dask.db"),
    ("postgres://postgres@127.0.0.1/x", "unknown database kind 'postgres'"),
    ("postgresql+psycopg2://postgres@127.0.0.1/x", "the database driver for postgresql+psycopg2://postgres@127.0.0.1/x "
                                                  "is not installed (psycopg2); for PostgreSQL: pip install 'lid-dask[postgres]'"),
    ("sqlite:////no/such/folder/x.db", "/no/such/folder"),  # run: no folder for the file; status: no ledger there
    ("postgresql+psycopg://postgres@127.0.0.1:5432/no_such_database_here", 'database "no_such_database_here" does not exist'),
    ("postgresql+psycopg://postgres@127.0.0.1:5432", "names no database"),
])
def test_a_bad_database_url_is_one_line(samples_dir, url, message):
    for command in (["run", str(samples_dir), "--no-progress"], ["status"]):
        out = cli(*command, "--db", url)
        assert out.returncode == 2, (command, out.stderr)
        assert message in out.stderr, (command, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_status_lists_the_runs_with_counts_and_dates(samples_dir, tmp_path):
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    Run.create("first", [str(samples_dir)], db=db, models="null")
    listed = cli("status", "--db", db)
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if "first" in line)
    cells = [cell.strip() for cell in row.split("│") if cell.strip()]
    assert cells[0] == "first" and cells[1].startswith(dt.date.today().isoformat())  # created today
    assert cells[2:6] == ["21", "0", "0", "21"] and cells[6] == "-"  # files, done, failed, to go; none finished
