"""The fleet's entrypoints as its containers run them: ``lid-dask certs``, ``lid-dask scheduler``,
``lid-dask worker`` (its certificate in environment variables, as SaladCloud gives secrets),
``lid-dask health`` and ``lid-dask run``, over TLS on loopback only."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from distributed import Client

from lid_dask.cli import main
from lid_dask.models.base import file_digest
from lid_dask.models.bundled import BUNDLED_SHA256, bundled_model_dir
from lid_dask.runs import Run
from lid_dask.security import certificate_role, client_security

from .conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
LID_DASK = str(Path(sys.executable).parent / "lid-dask")
SAMPLES = ROOT / "lid_dask" / "samples"
FIRST = [SAMPLES / "en-festival-kal_diphone-000.opus", SAMPLES / "ru-festival-msu_ru_nsh_clunits-000.wav"]
DRIFTED = [SAMPLES / "cs-festival-czech_dita-000.opus", SAMPLES / "fi-festival-suo_fi_lj_diphone-000.m4a"]
REFUSED = [SAMPLES / "en-festival-ked_diphone-000.mp3", SAMPLES / "ru-festival-msu_ru_nsh_clunits-001.mp3"]
DB_PASSWORD = "planted-db-password-5e1c"  # PostgreSQL here trusts loopback: any password connects


def test_certs_are_accepted_by_the_role_checks(tmp_path, capsys):
    """Each role's certificate is read as that role by a real TLS handshake; keys are private; a
    second call replaces nothing; --env gives back the worker's files as one line per variable."""
    certs = tmp_path / "certs"
    assert main(["certs", str(certs), "--host", "scheduler.example.org"]) == 0
    modes = {path.name: path.stat().st_mode & 0o777 for path in certs.iterdir()}
    assert modes == {"ca.pem": 0o644, "ca.key": 0o600, **{f"{role}.{ext}": 0o644 if ext == "pem" else 0o600
                                                         for role in ("scheduler", "worker", "client")
                                                         for ext in ("pem", "key")}}
    assert handshake(certs, server="scheduler", client="client") == ("scheduler", "client")
    assert handshake(certs, server="worker", client="worker") == ("worker", "worker")

    ca = (certs / "ca.pem").read_bytes()
    assert main(["certs", str(certs)]) == 2
    assert "already holds ca.pem" in capsys.readouterr().err
    assert (certs / "ca.pem").read_bytes() == ca

    assert main(["certs", str(certs), "--env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("=", 1)[0] for line in lines] == ["LID_DASK_TLS_CA", "LID_DASK_TLS_CERT", "LID_DASK_TLS_KEY"]
    values = [line.split("=", 1)[1].replace("\\n", "\n") for line in lines]
    assert values == [(certs / name).read_text() for name in ("ca.pem", "worker.pem", "worker.key")]


def handshake(certs: Path, server: str, client: str) -> tuple[str | None, str | None]:
    """(role the client reads in the server's certificate, role the server reads in the client's)."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certs / "ca.pem")
    server_context.load_cert_chain(certs / f"{server}.pem", certs / f"{server}.key")
    server_context.verify_mode = ssl.CERT_REQUIRED
    client_context = ssl.create_default_context(cafile=certs / "ca.pem")
    client_context.load_cert_chain(certs / f"{client}.pem", certs / f"{client}.key")
    client_context.check_hostname = False  # as distributed does
    left, right = socket.socketpair()
    seen = {}

    def serve():
        with server_context.wrap_socket(left, server_side=True) as sock:
            seen["client"] = certificate_role(sock.getpeercert())

    thread = threading.Thread(target=serve)
    thread.start()
    with client_context.wrap_socket(right) as sock:
        seen["server"] = certificate_role(sock.getpeercert())
        thread.join(10)
    return seen["server"], seen["client"]


@pytest.mark.slow
def test_scheduler_worker_and_run_from_the_entrypoints(tmp_path, pg_url):
    """A worker (its certificate from environment variables) and its health throughout, a run over TLS
    into PostgreSQL, what the worker saw, and a second worker whose model differs by one byte:
    flagged, then refused."""
    certs = tmp_path / "certs"
    out = cli("certs", str(certs), "--env")
    secrets = dict(line.split("=", 1) for line in out.stdout.splitlines())  # as pasted into SaladCloud
    port = free_port()
    address = f"tls://127.0.0.1:{port}"
    db = pg_url.replace("postgres@", f"postgres:{DB_PASSWORD}@")
    tls = ["--tls-ca", str(certs / "ca.pem"), "--tls-cert", str(certs / "client.pem"),
           "--tls-key", str(certs / "client.key")]

    payloads = tmp_path / "payloads.bin"
    scheduler = start([LID_DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address",
                       f"127.0.0.1:{free_port()}", "--certs", str(certs), "--preload", "tests.payload_recorder"],
                      {"PYTHONPATH": str(ROOT), "LID_TEST_PAYLOADS": str(payloads)}, tmp_path / "scheduler.log")
    first = Node(tmp_path / "first", {**secrets, "SALAD_MACHINE_ID": "salad-node-1"})
    second = client = None
    try:
        client = Client(address, security=client_security(*(str(certs / name) for name in
                                                             ("ca.pem", "client.pem", "client.key"))), timeout=120)
        assert client.run_on_scheduler(lambda dask_scheduler: (dask_scheduler.worker_ttl,
                                                               dask_scheduler.allowed_failures)) == (60, 1)
        # Unhealthy until the worker has joined its scheduler (models load first), healthy once it has.
        first.start(address)
        code, said = first.health()
        assert code == 1 and not client.scheduler_info()["workers"], said
        code, said = first.wait_health("salad-node-1 connected to")
        assert code == 0 and said.strip() == (f"worker salad-node-1 connected to {address}, models loaded: "
                                              "whisper-ct2:bundled")
        (first_address, info), = client.scheduler_info()["workers"].items()
        assert (info["name"], info["nthreads"], info["resources"]) == ("salad-node-1", 1, {})
        private, = first.tmp.glob("lid-dask-tls-*")  # its certificate, from the environment
        assert private.stat().st_mode & 0o777 == 0o700
        assert {p.name: (p.stat().st_mode & 0o777, p.read_text()) for p in private.iterdir()} == {
            name: (0o600, (certs / name).read_text()) for name in ("ca.pem", "worker.pem", "worker.key")}

        cli("run", *map(str, FIRST), "--name", "fleet", "--scheduler", address, *tls, "--no-progress",
            env={"LID_DASK_DB": db})
        run = Run("fleet", db)
        results = run.results()
        assert set(results.state) == {"done"} and sorted(results.language) == ["en", "ru"]
        assert set(results.worker) == {first_address}  # the scheduler stamps events with their sender

        # The worker holds no database credentials, in its environment or in what it was sent; the
        # process that runs tasks does not even hold its own key (the nanny took it out).
        worker_pid = first.status()["pid"]
        environments = {pid: Path(f"/proc/{pid}/environ").read_bytes() for pid in (first.process.pid, worker_pid)}
        assert b"LID_DASK_MODELS=whisper-ct2:bundled" in environments[worker_pid]
        assert b"PRIVATE KEY" not in environments[worker_pid] and b"LID_DASK_TLS" not in environments[worker_pid]
        sent = payloads.read_bytes()
        assert str(FIRST[0]).encode() in sent
        for name, content in {**environments, "payloads": sent}.items():
            assert DB_PASSWORD.encode() not in content and b"postgresql" not in content, name

        assert first.stop() == 0, first.log.read_text()[-3000:]
        assert not private.exists()
        code, said = first.health()
        assert code == 1 and "has exited" in said

        # A second worker whose model differs by one byte, started while a run waits for workers.
        cache, tampered = tampered_cache(tmp_path / "cache")
        second = Node(tmp_path / "second", {**secrets, "LID_DASK_CACHE": str(cache)})
        orchestrator = start([LID_DASK, "run", *map(str, DRIFTED), "--name", "fleet", "--scheduler", address, *tls,
                              "--no-progress", "--on-drift", "flag"], {"LID_DASK_DB": db}, tmp_path / "flag.log")
        wait_for(lambda: run.status().counts.get("leased"), "the run to claim files", tmp_path / "flag.log")
        started = dt.datetime.now(dt.timezone.utc)
        second.start(address, "--name", "drifted")
        assert orchestrator.wait(timeout=300) == 0, (tmp_path / "flag.log").read_text()[-3000:]
        second_address, = (a for a, w in client.scheduler_info()["workers"].items() if w["name"] == "drifted")
        results = run.results().set_index("uri")
        drifted = results.loc[list(map(str, DRIFTED))]
        assert set(drifted.state) == {"done"} and set(drifted.worker) == {second_address}
        print(f"\nworker start-up, process start to first finished batch: "
              f"{(drifted.finished_at.min() - started).total_seconds():.1f} s")
        workers = run.workers().set_index("name")
        assert list(workers.loc[[first_address, second_address], "status"]) == ["ok", "flagged"]
        reference, other = workers.loc[[first_address, second_address], "fingerprint"]
        assert [f["models"][0]["model_sha256"] for f in (reference, other)] == [BUNDLED_SHA256, tampered]
        other["models"][0]["model_sha256"] = BUNDLED_SHA256
        assert other == reference  # nothing else differs

        out = cli("run", *map(str, REFUSED), "--name", "fleet", "--scheduler", address, *tls, "--no-progress",
                  "--on-drift", "refuse", env={"LID_DASK_DB": db}, check=False)
        assert out.returncode == 2 and "every worker differs from the run's environment" in out.stderr
        assert run.status().counts.get("done") == 4
        assert "done" not in set(run.results().set_index("uri").loc[list(map(str, REFUSED)), "state"])
    finally:
        if client:
            client.close()
        for node in (first, second):
            if node and node.process:
                node.stop()
        scheduler.send_signal(signal.SIGTERM)
        scheduler.wait(timeout=60)


class Node:
    """A container's view: `lid-dask worker` and `lid-dask health` with the same environment."""

    def __init__(self, folder: Path, env: dict[str, str]):
        self.folder, self.tmp = folder, folder / "tmp"
        self.tmp.mkdir(parents=True)
        self.env = {**env, "LID_DASK_HEALTH_DIR": str(folder / "health"), "TMPDIR": str(self.tmp)}
        self.log = folder / "worker.log"
        self.process = None

    def start(self, address: str, *args: str) -> None:
        self.process = start([LID_DASK, "worker", address, "--host", "127.0.0.1", *args], self.env, self.log)

    def health(self) -> tuple[int, str]:
        out = cli("health", env=self.env, check=False)
        return out.returncode, out.stdout + out.stderr

    def wait_health(self, text: str) -> tuple[int, str]:
        """The health check's first answer that says `text`."""
        def answer():
            code, said = self.health()
            return (code, said) if text in said else None
        return wait_for(answer, f"health to say {text!r}", self.log)

    def status(self) -> dict:
        status, = (self.folder / "health").glob("*.json")
        return json.loads(status.read_text())

    def stop(self) -> int:
        """SIGTERM, as a container stop sends it; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def tampered_cache(cache: Path) -> tuple[Path, str]:
    """A model cache holding the bundled model with one byte of its weights changed, and the
    changed weights' sha256."""
    source = bundled_model_dir()
    copy = cache / source.name
    shutil.copytree(source, copy)
    with open(copy / "model.bin", "r+b") as weights:
        middle = os.fstat(weights.fileno()).st_size // 2 & ~1  # inside the weights, an fp16 value's low byte
        weights.seek(middle)
        byte = weights.read(1)[0]
        weights.seek(middle)
        weights.write(bytes([byte ^ 1]))
    return cache, file_digest(copy / "model.bin")


def cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([LID_DASK, *args], env={**os.environ, **(env or {})}, capture_output=True, text=True,
                         timeout=300)
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, env={**os.environ, **env}, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_for(predicate, what: str, log: Path, timeout: float = 240):
    """`predicate`'s first true value."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; {log.name}: {log.read_text()[-3000:]}")
        time.sleep(0.5)
    return value
