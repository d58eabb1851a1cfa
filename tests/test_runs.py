"""Distributed runs under faults: real processes, real PostgreSQL, a real Dask cluster.

Each test checks the ledger afterwards: every file ends done (or dead with its reason) exactly
once, nothing lost, nothing duplicated.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import sqlalchemy as sa
from distributed import Client, LocalCluster

from lid_dask.cluster import connect
from lid_dask.ledger import LedgerError, schema
from lid_dask.runs import Run

from . import fault_plugins  # noqa: F401 - Run.create checks models here: the test backends are registered
from .conftest import free_port
from .conftest import run as sh

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clips(tmp_path_factory, audio_dir) -> Path:
    """16 short speech clips (copies of two espeak-ng sentences under distinct names)."""
    folder = tmp_path_factory.mktemp("clips")
    for i in range(16):
        shutil.copy(audio_dir / ("en.wav" if i % 2 else "de.wav"), folder / f"clip{i:02d}.wav")
    return folder


def assert_exactly_once(run: Run, expected_files: int) -> None:
    counts = run.status().counts
    assert counts["done"] + counts["dead"] == expected_files, counts
    assert counts["pending"] == counts["leased"] == counts["failed"] == 0, counts
    with run.ledger.engine.connect() as connection:
        results = connection.execute(sa.select(sa.func.count()).select_from(schema.results)).scalar()
        twice = connection.execute(sa.text(
            "SELECT count(*) FROM (SELECT file_id FROM attempts WHERE outcome = 'done' "
            "GROUP BY file_id HAVING count(*) > 1) AS d")).scalar()
    assert results == counts["done"]
    assert twice == 0  # no file was recorded done twice


def run_in_thread(run: Run, client: Client, **settings) -> threading.Thread:
    thread = threading.Thread(target=run.execute, args=(client,), kwargs=dict(progress=False, **settings),
                              daemon=True)
    thread.start()
    return thread


def wait_for(predicate, timeout: float = 120, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in time")
        time.sleep(every)


@pytest.fixture
def local_client():
    client = connect(n_workers=2, dashboard_address=None)
    yield client
    cluster = client.cluster
    client.close()
    cluster.close(timeout=180)  # a nanny still restarting a killed worker is slow to stop


@pytest.mark.slow
def test_sigkill_a_worker_mid_run(pg_url, clips, local_client):
    run = Run.create("kill-worker", [str(clips)], db=pg_url, batch_files=2)
    pids = local_client.run(os.getpid)
    thread = run_in_thread(run, local_client)
    wait_for(lambda: run.status().counts["done"] >= 4)
    os.kill(next(iter(pids.values())), signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert_exactly_once(run, 16)
    assert run.status().counts["done"] == 16


@pytest.mark.slow
def test_kill_the_orchestrator_and_resume(pg_url, clips, tmp_path):
    command = [sys.executable, "-m", "lid_dask.cli", "run", str(clips), "--name", "resume", "--db", pg_url,
               "--workers", "1", "--batch-files", "2", "--no-progress"]
    first = subprocess.Popen(command, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    run = None
    try:
        def started():
            nonlocal run
            try:
                run = run or Run("resume", pg_url)
            except (LookupError, LedgerError):  # no ledger, or no run in it, yet
                return False
            return run.status().counts["done"] >= 4
        wait_for(started, timeout=180)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the orchestrator and its local cluster, no clean-up
        first.wait()
    before = run.status().counts
    assert before["leased"] > 0 or before["done"] < 16
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "took over" in second.stderr or before["leased"] == 0
    assert_exactly_once(run, 16)
    with run.ledger.engine.connect() as connection:
        redone = connection.execute(sa.text("SELECT count(*) FROM files WHERE attempts > 1")).scalar()
    assert redone <= 2 * 2  # at most the batches in flight: 2 batches of 2 files


@pytest.mark.slow
def test_postgres_restart_mid_run(pg_url, clips, local_client):
    """The orchestrator and a status reader both wait for the database to come back."""
    run = Run.create("pg-restart", [str(clips)], db=pg_url, batch_files=2)
    thread = run_in_thread(run, local_client)
    wait_for(lambda: run.status().counts["done"] >= 2)
    version = os.listdir("/etc/postgresql")[0]
    sh("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "stop", "-m", "fast")
    statuses = []
    reader = threading.Thread(target=lambda: statuses.append(run.status()), daemon=True)
    reader.start()
    time.sleep(3)
    assert reader.is_alive() and not statuses  # waiting, not failing
    sh("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start")
    reader.join(timeout=60)
    assert statuses and statuses[0].total == 16
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert_exactly_once(run, 16)
    assert run.status().counts["done"] == 16


@pytest.mark.slow
def test_poison_file_is_isolated(tmp_path, clips):
    folder = tmp_path / "with-poison"
    folder.mkdir()
    for clip in sorted(clips.iterdir())[:7]:
        shutil.copy(clip, folder / clip.name)
    soundfile.write(folder / "clip03-poison.wav", np.full(16000 * 3, 0.5, dtype=np.float32), 16000)
    run = Run.create("poison", [str(folder)], db=f"sqlite:///{tmp_path / 'ledger.db'}", models="poison-sensitive",
                     vad="none", batch_files=4)
    client = connect(n_workers=2, dashboard_address=None, preload=("tests.fault_plugins",))
    try:
        run.execute(client, progress=False)
    finally:
        cluster = client.cluster
        client.close()
        cluster.close(timeout=180)  # a nanny still restarting a killed worker is slow to stop
    assert_exactly_once(run, 8)
    frame = run.results().set_index("uri")
    dead = frame[frame.state == "dead"]
    assert list(dead.index) == [str(folder / "clip03-poison.wav")]
    assert dead.iloc[0].error_kind == "killed_worker" and "poison" in dead.iloc[0].error
    assert (frame[frame.state == "done"].language == "en").all()


@pytest.mark.slow
def test_workers_that_accept_no_inbound_connections(tmp_path, clips):
    """A Salad-like worker: it connects out to the scheduler but advertises a closed port."""
    cluster = LocalCluster(n_workers=0, processes=True, dashboard_address=None)
    closed = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address, "--no-nanny",
         "--nthreads", "1", "--listen-address", f"tcp://127.0.0.1:{free_port()}",
         "--contact-address", f"tcp://127.0.0.1:{closed}", "--preload", "lid_dask.worker", "--no-dashboard"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = Client(cluster)
    try:
        client.wait_for_workers(1, timeout=60)
        assert list(client.scheduler_info()["workers"]) == [f"tcp://127.0.0.1:{closed}"]
        with pytest.raises(ConnectionRefusedError):  # nobody can reach the worker
            socket.create_connection(("127.0.0.1", closed), timeout=2)
        run = Run.create("salad", [str(clips)], db=f"sqlite:///{tmp_path / 'ledger.db'}", batch_files=4)
        run.execute(client, progress=False)
        assert_exactly_once(run, 16)
        assert run.status().counts["done"] == 16
        assert list(run.workers().status) == ["ok"]
    finally:
        client.close()
        worker.terminate()
        worker.wait(timeout=30)
        cluster.close(timeout=180)  # a nanny still restarting a killed worker is slow to stop


@pytest.mark.slow
def test_corrupt_and_missing_inputs_including_s3(tmp_path, clips, s3):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(os.urandom(5000))
    sources = [str(clips / "clip00.wav"), str(bad), str(tmp_path / "missing.ogg"), "s3://clips/talk/en.mp3",
               "s3://clips/talk/gone.mp3", "s3://no-bucket/x.wav"]
    run = Run.create("bad-inputs", sources, db=f"sqlite:///{tmp_path / 'ledger.db'}", storage_options=s3)
    run.execute(progress=False)  # its own local cluster, whose workers get the credentials through their environment
    assert_exactly_once(run, 6)
    frame = run.results().set_index("uri")
    assert frame.loc[str(clips / "clip00.wav"), "language"] == "de"
    assert frame.loc["s3://clips/talk/en.mp3", "language"] == "en"
    assert frame.loc[str(bad), "error_kind"] == "corrupt"
    assert list(frame.loc[[str(tmp_path / "missing.ogg"), "s3://clips/talk/gone.mp3", "s3://no-bucket/x.wav"],
                          "error_kind"]) == ["not_found"] * 3


def test_two_orchestrators_on_one_run_are_refused(tmp_path, clips):
    from lid_dask.orchestrator import Orchestrator, RunLocked

    run = Run.create("locked", [str(clips)], db=f"sqlite:///{tmp_path / 'ledger.db'}")
    assert run.ledger.acquire_lock(run.info.id, "otherhost:1:abcd", ttl=60)
    with pytest.raises(RunLocked, match="otherhost"):
        Orchestrator(run.ledger, "locked", client=None).execute()


@pytest.mark.slow
def test_drifted_workers_are_flagged_or_refused(tmp_path, clips, local_client):
    """The run's reference environment says ctranslate2 0.0: every real worker has drifted from it."""
    from lid_dask import fingerprint

    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    run = Run.create("drift", [str(clips / "clip00.wav"), str(clips / "clip01.wav")], db=db, batch_files=1)
    reference = fingerprint.environment()
    reference["packages"]["ctranslate2"] = "0.0"
    run.ledger.set_fingerprint(run.info.id, reference)
    with pytest.raises(RuntimeError, match="every worker differs"):
        Run("drift", db).execute(local_client, progress=False, on_drift="refuse")
    assert run.status().counts["done"] == 0
    Run("drift", db).execute(local_client, progress=False, on_drift="flag")
    assert run.status().counts["done"] == 2
    workers = run.workers()
    assert len(workers) == 2 and set(workers.status) == {"flagged"}
    assert all("ctranslate2" in reason for reason in workers.reason)


@pytest.mark.slow
def test_a_resumed_run_accepts_its_own_workers(tmp_path, clips, local_client):
    """The reference read back from the ledger (JSON) matches the same workers' live fingerprints."""
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    run = Run.create("resume", [str(clips / "clip00.wav")], db=db, batch_files=1)
    run.execute(local_client, progress=False)
    run.add([str(clips / "clip01.wav"), str(clips / "clip02.wav")])
    Run("resume", db).execute(local_client, progress=False, on_drift="refuse")
    assert run.status().counts["done"] == 3
    assert set(run.workers().status) == {"ok"}


@pytest.mark.slow
def test_tls_cluster_from_the_deployment_scripts(tmp_path, clips):
    """Certificates from lid-dask certs, scheduler and worker from their launch scripts."""
    certs = tmp_path / "certs"
    sh(str(Path(sys.executable).parent / "lid-dask"), "certs", str(certs))
    port = free_port()
    env = {**os.environ, "CERTS": str(certs), "HOST": "127.0.0.1", "PORT": str(port),
           "DASHBOARD_PORT": str(free_port()), "SCHEDULER": f"tls://127.0.0.1:{port}"}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    scheduler = subprocess.Popen(["bash", str(ROOT / "cluster" / "scheduler.sh")], env=env, start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen(["bash", str(ROOT / "cluster" / "worker.sh"), "--host", "127.0.0.1"], env=env,
                              cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "lid_dask.cli", "run", str(clips / "clip00.wav"), str(clips / "clip01.wav"),
             "--name", "tls", "--db", f"sqlite:///{tmp_path / 'ledger.db'}", "--scheduler", f"tls://127.0.0.1:{port}",
             "--tls-ca", str(certs / "ca.pem"), "--tls-cert", str(certs / "client.pem"),
             "--tls-key", str(certs / "client.key"), "--no-progress"],
            capture_output=True, text=True, timeout=240, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        run = Run("tls", f"sqlite:///{tmp_path / 'ledger.db'}")
        assert run.status().counts["done"] == 2
        assert set(run.results().language) == {"en", "de"}
        plain = subprocess.run([sys.executable, "-c", f"from distributed import Client; Client('tcp://127.0.0.1:{port}', "
                                "timeout=5)"], capture_output=True, text=True, timeout=60)
        assert plain.returncode != 0  # no certificate, no connection
    finally:
        for process in (worker, scheduler):
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
