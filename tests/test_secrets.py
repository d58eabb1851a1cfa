"""Storage credentials stay with the orchestrator: not in the ledger, task payloads, logs or outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lid_dask.runs import Run
from lid_dask.storage import local_worker_environment, split_secrets, worker_options

from .conftest import start_long_lived_cluster, stop_processes

PLANTED_KEY = "AKIAPLANTEDKEY7F3A9C"
PLANTED_SECRET = "planted-secret-6b1d0e4f"


def test_credentials_are_split_from_the_options_that_say_where_audio_is(monkeypatch):
    options = {"key": "k", "secret": "s", "anon": False, "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"},
               "config_kwargs": {"aws_secret_access_key": "s2"}, "headers": {"Authorization": "Bearer t"},
               "account_key": "a", "token": "t", "region_name": "eu-west-1"}
    public, secret = split_secrets(options)
    assert public == {"anon": False, "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"},
                      "region_name": "eu-west-1"}
    assert set(secret) == {"key", "secret", "config_kwargs", "headers", "account_key", "token"}
    monkeypatch.setenv("LID_DASK_STORAGE_OPTIONS", json.dumps({"key": "mine", "secret": "mine too"}))
    assert worker_options(public) == {**public, "key": "mine", "secret": "mine too"}
    monkeypatch.setenv("LID_DASK_STORAGE_OPTIONS", "{not json")
    with pytest.raises(ValueError, match="LID_DASK_STORAGE_OPTIONS is not JSON"):
        worker_options(public)
    assert local_worker_environment({}) == {}


@pytest.mark.slow
def test_a_planted_secret_appears_nowhere_but_the_orchestrators_memory(tmp_path, s3):
    """A long-lived cluster whose worker has its own credentials; the orchestrator is given others."""
    payloads, logs = tmp_path / "payloads.bin", tmp_path / "logs"
    logs.mkdir()
    worker_credentials = json.dumps({"key": "worker-own-key", "secret": "worker-own-secret"})
    address, processes = start_long_lived_cluster(
        preloads=(), scheduler_preloads=("tests.payload_recorder",), log_dir=logs,
        env={"LID_DASK_STORAGE_OPTIONS": worker_credentials, "LID_TEST_PAYLOADS": str(payloads)})
    db = tmp_path / "ledger.db"
    options = {"key": PLANTED_KEY, "secret": PLANTED_SECRET, "client_kwargs": s3["client_kwargs"]}

    def cli(*args):
        out = subprocess.run([sys.executable, "-m", "lid_dask.cli", *args, "--db", f"sqlite:///{db}"],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        return out.stdout + out.stderr

    try:
        printed = cli("run", "s3://clips/talk/", "--name", "secrets", "--scheduler", address, "--no-progress",
                      "--storage-options", json.dumps(options))
        printed += cli("status", "secrets")
        printed += cli("export", "secrets", "-o", str(tmp_path / "out.csv"), "-f", "csv")
        printed += cli("export", "secrets", "-o", str(tmp_path / "out.parquet"))
        printed += cli("review", "export", "secrets", "-o", str(tmp_path / "review.csv"))
    finally:
        stop_processes(processes)
    run = Run("secrets", f"sqlite:///{db}")
    frame = run.results()
    assert len(frame) == 2 and set(frame.state) == {"done"}  # the worker read the audio with its own credentials
    assert "storage credentials (key, secret) were used here for listing only" in printed
    assert run.info.config["identify"]["storage_options"] == {"client_kwargs": s3["client_kwargs"]}
    assert payloads.stat().st_size > 0 and b"s3://clips/talk/en.mp3" in payloads.read_bytes()
    searched = {"printed output": printed.encode()}
    searched.update({path.name: path.read_bytes() for path in tmp_path.glob("ledger.db*")})
    searched.update({path.name: path.read_bytes() for path in [payloads, *logs.iterdir()]})
    searched.update({name: (tmp_path / name).read_bytes() for name in ("out.csv", "out.parquet", "review.csv")})
    assert {"ledger.db", "payloads.bin", "scheduler.log", "worker-0.log", "out.parquet"} <= set(searched)
    for secret in (PLANTED_KEY, PLANTED_SECRET):
        assert [name for name, content in searched.items() if secret.encode() in content] == []
