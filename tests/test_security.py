"""TLS roles: each certificate from `lid-dask certs` does its own role's job and nothing else.

The cluster tests start the scheduler and one worker from the deployment scripts, on loopback only,
and try every certificate where it does not belong. The worker loads the ``null`` model: no model
weights are needed to test who may talk to whom.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from distributed import Client, Scheduler, Worker, get_worker, rpc
from distributed.comm import connect
from distributed.protocol.pickle import dumps
from distributed.security import Security

from lid_dask.security import certificate_role, client_security

from .conftest import free_port
from .conftest import run as sh

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)


def make_certs(folder: Path) -> Path:
    sh(str(Path(BIN) / "lid-dask"), "certs", str(folder))
    return folder


def security(certs: Path, name: str, role: str = "client") -> Security:
    """Plain Dask TLS settings that present `name`.pem as `role` (no lid-dask checks of their own)."""
    return Security(tls_ca_file=str(certs / "ca.pem"), require_encryption=True,
                    **{f"tls_{role}_cert": str(certs / f"{name}.pem"), f"tls_{role}_key": str(certs / f"{name}.key")})


def trusted(certs: Path) -> Security:
    return client_security(str(certs / "ca.pem"), str(certs / "client.pem"), str(certs / "client.key"))


def wait_for(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in time")
        time.sleep(0.2)


def subject(peercert_fields: dict[str, str]) -> dict:
    return {"subject": tuple(((key, value),) for key, value in peercert_fields.items())}


def test_certificate_role_reads_the_subject():
    assert certificate_role(subject({"organizationName": "lid-dask", "organizationalUnitName": "worker",
                                     "commonName": "lid-dask-worker"})) == "worker"
    assert certificate_role(subject({"commonName": "lid-dask-worker"})) is None  # made without roles
    assert certificate_role(subject({"organizationName": "other", "organizationalUnitName": "client"})) is None
    assert certificate_role(subject({"organizationName": "lid-dask", "organizationalUnitName": "admin"})) is None
    assert certificate_role({"subject": ((("organizationName", "lid-dask"),), (("organizationalUnitName", "client"),),
                                         (("organizationalUnitName", "scheduler"),))}) is None
    assert certificate_role(None) is None and certificate_role({}) is None


def test_certs_give_each_role_its_subject_and_usage(tmp_path):
    certs = make_certs(tmp_path / "certs")
    usages = {"scheduler": {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH},
              "worker": {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH},
              "client": {ExtendedKeyUsageOID.CLIENT_AUTH}}
    for role, usage in usages.items():
        cert = x509.load_pem_x509_certificate((certs / f"{role}.pem").read_bytes())
        assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)] == [role]
        assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["lid-dask"]
        assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == usage
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
        names = [e for e in cert.extensions if isinstance(e.value, x509.SubjectAlternativeName)]
        assert bool(names) == (role == "scheduler")  # only the scheduler names hosts
        assert oct((certs / f"{role}.key").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("role, serves", [("worker", True), ("scheduler", True), ("client", False)])
def test_only_server_usages_can_serve_tls(tmp_path, role, serves):
    """A worker's nanny and worker listen: a client certificate (clientAuth only) cannot."""
    certs = make_certs(tmp_path / "certs")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certs / f"{role}.pem", certs / f"{role}.key")
    client_context = ssl.create_default_context(cafile=certs / "ca.pem")
    client_context.check_hostname = False  # as distributed does
    left, right = socket.socketpair()
    server = threading.Thread(target=lambda: _quietly(lambda: server_context.wrap_socket(left, server_side=True)))
    server.start()
    try:
        if serves:
            client_context.wrap_socket(right).close()
        else:
            with pytest.raises(ssl.SSLCertVerificationError, match="certificate purpose"):
                client_context.wrap_socket(right)
    finally:
        right.close()
        server.join(10)
        left.close()


def _quietly(handshake) -> None:
    try:
        handshake()
    except OSError:
        pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and one worker from cluster/scheduler.sh and cluster/worker.sh, logs kept."""
    folder = tmp_path_factory.mktemp("tls")
    certs = make_certs(folder / "certs")
    port, dashboard = free_port(), free_port()
    env = {**os.environ, "CERTS": str(certs), "HOST": "127.0.0.1", "PORT": str(port), "DASHBOARD_PORT": str(dashboard),
           "SCHEDULER": f"tls://127.0.0.1:{port}", "LID_DASK_MODELS": "null", "PATH": f"{BIN}:{os.environ['PATH']}"}
    logs = SimpleNamespace(scheduler=folder / "scheduler.log", worker=folder / "worker.log")
    scheduler = subprocess.Popen(["bash", str(ROOT / "cluster" / "scheduler.sh")], env=env, start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=logs.scheduler.open("w"))
    worker = subprocess.Popen(["bash", str(ROOT / "cluster" / "worker.sh"), "--host", "127.0.0.1"], env=env,
                              cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=logs.worker.open("w"))
    try:
        address = f"tls://127.0.0.1:{port}"
        with Client(address, security=trusted(certs), timeout=60) as client:
            client.wait_for_workers(1, timeout=120)
            (worker_address, info), = client.scheduler_info()["workers"].items()
        yield SimpleNamespace(address=address, certs=certs, env=env, logs=logs, dashboard=dashboard,
                              scheduler=scheduler, worker=worker_address, nanny=info["nanny"], folder=folder)
    finally:
        for process in (worker, scheduler):
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def logged(path: Path, text: str) -> bool:
    return text in path.read_text()


def refused(cluster, text: str, log: str = "scheduler") -> None:
    """The refusal shows in the server's log (it is written before the connection is closed)."""
    wait_for(lambda: logged(getattr(cluster.logs, log), text), timeout=10)


def clients_on_scheduler(client: Client) -> list[str]:
    return client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.clients))


@pytest.mark.slow
def test_client_certificate_runs_tasks_and_the_worker_needs_nothing_refused(cluster):
    """The first test on the cluster: registration, heartbeats, a task, its event and the gather of
    its result passed every check, on the scheduler, the worker and its nanny."""
    def log_from_task(topic: str) -> int:  # defined here so that it is pickled by value
        get_worker().log_event(topic, {"answer": 42})  # how lid-dask's results travel
        return 1

    with Client(cluster.address, security=trusted(cluster.certs), timeout=30) as client:
        assert client.submit(log_from_task, "lid-dask-test", pure=False).result(timeout=60) == 1
        wait_for(lambda: client.get_events("lid-dask-test"), timeout=30)
        assert client.get_events("lid-dask-test")[0][1]["answer"] == 42
    assert "refused" not in cluster.logs.scheduler.read_text()
    assert "refused" not in cluster.logs.worker.read_text()


@pytest.mark.slow
def test_worker_certificate_is_not_a_client(cluster, tmp_path):
    """The worker key can neither register as a client nor call a client's operations; nothing runs."""
    worker_key = security(cluster.certs, "worker")
    marker = tmp_path / "ran"

    async def attempts():
        args = worker_key.get_connection_args("client")
        async with rpc(cluster.address, connection_args=args) as scheduler:
            with pytest.raises(OSError):
                await scheduler.run_function(function=dumps(lambda: marker.write_text("ran")))
        async with rpc(cluster.address, connection_args=args) as scheduler:
            await scheduler.log_event(topic="worker-restart-memory", msg={})  # what a nanny sends
            with pytest.raises(OSError):  # an event that the scheduler would not stamp with its sender
                await scheduler.log_event(topic="lid-dask-results", msg={"batch": "forged"})
        comm = await connect(cluster.address, **args)  # a bare stream, to send client operations on
        await comm.write({"op": "connection_stream"})
        with pytest.raises(OSError):
            await asyncio.wait_for(comm.read(), 10)

    with Client(cluster.address, security=trusted(cluster.certs), timeout=30) as client:
        before = clients_on_scheduler(client)
        with pytest.raises(OSError):  # CommClosedError and TimeoutError are OSErrors
            Client(cluster.address, security=worker_key, timeout=5)
        asyncio.run(attempts())
        for op in ("register-client", "run_function", "log_event", "connection_stream"):
            refused(cluster, f"refused {op!r} from")
        assert clients_on_scheduler(client) == before
        assert client.get_events("lid-dask-results") == ()
        assert not marker.exists()
        client.run_on_scheduler(lambda: marker.write_text("ran"))  # the same call works for a client
        assert marker.read_text() == "ran"


@pytest.mark.slow
def test_a_worker_stream_carries_only_worker_operations(cluster):
    """A worker that registered (its certificate may) and then subscribes to the results topic as a
    client over its own stream is cut off and removed; no subscription is made."""
    topic = "lid-dask-results"

    async def rogue() -> bool:
        async with Client(cluster.address, security=trusted(cluster.certs), asynchronous=True) as client:
            async with Worker(cluster.address, security=security(cluster.certs, "worker", role="worker"),
                              host="127.0.0.1", nthreads=1, name="rogue") as worker:
                assert worker.address in (await client.scheduler.identity(n_workers=-1))["workers"]
                worker.batched_stream.send({"op": "subscribe-topic", "topic": topic, "client": client.id})
                for _ in range(100):
                    if worker.address not in (await client.scheduler.identity(n_workers=-1))["workers"]:
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError("the rogue worker is still registered")
            return await client.run_on_scheduler(  # the broker is private: no public way to list subscribers
                lambda dask_scheduler: bool(dask_scheduler._broker._topics[topic].subscribers))

    assert asyncio.run(rogue()) is False
    refused(cluster, "refused 'subscribe-topic' from")


@pytest.mark.slow
@pytest.mark.parametrize("case", ["another CA", "no role (made without roles)", "plain tcp"])
def test_connections_without_a_role_are_refused(cluster, case):
    certs = cluster.certs
    if case == "another CA":
        other = make_certs(cluster.folder / "other-ca")
        kwargs = {"security": security(other, "client")}
    elif case.startswith("no role"):
        old = cluster.folder / "old"
        old.mkdir(exist_ok=True)
        sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-subj", "/CN=lid-dask-client", "-keyout", str(old / "client.key"), "-out", str(old / "client.csr"))
        sh("openssl", "x509", "-req", "-in", str(old / "client.csr"), "-CA", str(certs / "ca.pem"),
           "-CAkey", str(certs / "ca.key"), "-CAcreateserial", "-days", "2", "-out", str(old / "client.pem"))
        (old / "ca.pem").write_bytes((certs / "ca.pem").read_bytes())
        kwargs = {"security": security(old, "client")}
    else:
        kwargs = {"address": cluster.address.replace("tls://", "tcp://")}
    with pytest.raises(OSError):
        Client(kwargs.pop("address", cluster.address), timeout=5, **kwargs)
    if case.startswith("no role"):
        refused(cluster, "(commonName=lid-dask-client) names no lid-dask role")


@pytest.mark.slow
def test_client_certificate_cannot_run_a_worker(cluster, tmp_path):
    """worker.sh given the client's key: the scheduler refuses its nanny, and it never joins."""
    certs = tmp_path / "certs"
    certs.mkdir()
    for name, source in (("ca.pem", "ca.pem"), ("worker.pem", "client.pem"), ("worker.key", "client.key")):
        (certs / name).write_bytes((cluster.certs / source).read_bytes())
    out = subprocess.run(["bash", str(ROOT / "cluster" / "worker.sh"), "--host", "127.0.0.1", "--name", "impostor"],
                         env={**cluster.env, "CERTS": str(certs)}, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0
    refused(cluster, "refused 'register_nanny' from")
    with Client(cluster.address, security=trusted(cluster.certs), timeout=30) as client:
        assert "impostor" not in {w["name"] for w in client.scheduler_info()["workers"].values()}


@pytest.mark.slow
def test_workers_and_nannies_serve_a_worker_certificate_only_data(cluster, tmp_path):
    marker = tmp_path / "ran"
    args = security(cluster.certs, "worker").get_connection_args("client")

    async def attempts():
        for address in (cluster.worker, cluster.nanny):
            async with rpc(address, connection_args=args) as server:
                with pytest.raises(OSError):
                    await server.run(function=dumps(lambda: marker.write_text("ran")))
        comm = await connect(cluster.worker, **args)  # what a peer worker does to fetch a task's input
        await comm.write({"op": "get_data", "keys": [], "who": None})
        assert (await comm.read())["status"] == "OK"
        await comm.write("OK")
        await comm.close()

    asyncio.run(attempts())
    assert not marker.exists()
    refused(cluster, "Worker refused 'run' from", log="worker")
    refused(cluster, "Nanny refused 'run' from", log="worker")


@pytest.mark.slow
def test_the_client_talks_only_to_a_scheduler_certificate(cluster):
    """A worker key posing as the scheduler gets no connection from the orchestrator's client."""
    async def impostor():
        async with Scheduler(protocol="tls", host="127.0.0.1", port=0, dashboard_address="127.0.0.1:0",
                             security=security(cluster.certs, "worker", role="scheduler")) as scheduler:
            with pytest.raises(OSError, match="certificate"):
                await Client(scheduler.address, security=trusted(cluster.certs), asynchronous=True, timeout=10)

    asyncio.run(impostor())


@pytest.mark.slow
def test_dashboard_on_loopback_without_the_http_api(cluster):
    listening = {c.laddr for c in psutil.Process(cluster.scheduler.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN}
    assert ("127.0.0.1", cluster.dashboard) in listening
    assert {port for _, port in listening} == {cluster.dashboard, int(cluster.address.rsplit(":", 1)[1])}
    url = f"http://127.0.0.1:{cluster.dashboard}"
    assert urllib.request.urlopen(f"{url}/health", timeout=10).status == 200
    for path in ("/api/v1", "/api/v1/get_workers", "/proxy/8787/127.0.0.1/status"):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(url + path, timeout=10)
        assert error.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(urllib.request.Request(f"{url}/api/v1/retire_workers", data=b"{}"), timeout=10)
    assert error.value.code == 404
