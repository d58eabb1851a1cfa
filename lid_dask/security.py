"""Who may do what on a lid-dask TLS cluster: the role in each certificate, checked on every connection.

Each certificate from ``lid-dask certs`` (`lid_dask.tls`) names its role in its subject (``O=lid-dask``,
``OU=scheduler|worker|client``). Dask itself only asks that a certificate be signed by the cluster's
CA, so the worker key, which sits on a hundred third-party hosts, would otherwise work as a client:
it could submit code that the scheduler unpickles and runs (on itself and, through it, on every
worker) and answer any batch.

`dask_setup` is a preload for the scheduler, the workers and their nannies
(``--preload lid_dask.security``, ``--preload-nanny lid_dask.security``): every connection to a TLS
listener must present a certificate with a lid-dask role, and a role may send only the operations
listed for it here (an allow-list); anything else is logged and the connection closed. A plain
``tcp://`` listener has no peer certificate and so no roles: use it only on loopback or a trusted
network.

`client_security` is the orchestrator's side: its connections complete only with a peer holding the
scheduler's certificate, so a worker key cannot pose as the scheduler either.
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Callable

from distributed import Nanny, Scheduler, Worker
from distributed.comm import CommClosedError
from distributed.comm.tcp import TLSListener
from distributed.security import Security

log = logging.getLogger(f"distributed.{__name__}")  # under Dask's log handler and format

ORGANIZATION = "lid-dask"
ROLES = ("scheduler", "worker", "client")

# What a worker and its nanny send to the scheduler (read from distributed 2026.7.1's worker.py and
# nanny.py; shuffles, locks, queues and clients inside tasks are not among them).
WORKER_TO_SCHEDULER = frozenset({
    # requests
    "register-worker", "register_nanny", "heartbeat_worker", "unregister", "who_has", "retire_workers",
    "set_resources",
    # the worker's batched stream: the scheduler's worker_handlers and work stealing's answer
    "task-finished", "task-erred", "release-worker-data", "add-keys", "long-running", "reschedule",
    "keep-alive", "log-event", "worker-status-change", "request-refresh-who-has", "steal-response",
    # ending a connection or a stream
    "close", "close-stream",
})
# The one event a nanny sends as a request (``log_event``). A worker's own events travel on its stream
# (``log-event``), where the scheduler writes the sender's address into them (``msg["worker"]``); a
# request-borne event could name any worker as its sender.
NANNY_EVENT = "worker-restart-memory"
WORKER_TO_WORKER = frozenset({"get_data", "close"})  # a peer fetching a task's input
WORKER_TO_NANNY = frozenset({"close_gracefully", "close"})  # the worker process asking its nanny to stop
WORKER_REGISTRATION = frozenset({"register-worker", "register_nanny"})  # a client key is not a worker


def _worker_to_scheduler(message: dict) -> bool:
    if message["op"] == "log_event":
        return message.get("topic") == NANNY_EVENT
    return message["op"] in WORKER_TO_SCHEDULER


Allows = Callable[[dict], bool] | None  # whether a message may pass; None: every message
POLICIES: dict[type, dict[str, Allows]] = {
    Scheduler: {"scheduler": None, "client": lambda message: message["op"] not in WORKER_REGISTRATION,
                "worker": _worker_to_scheduler},
    Worker: {"scheduler": None, "client": None, "worker": lambda message: message["op"] in WORKER_TO_WORKER},
    Nanny: {"scheduler": None, "client": None, "worker": lambda message: message["op"] in WORKER_TO_NANNY},
}


def certificate_role(peercert: dict | None) -> str | None:
    """The lid-dask role a certificate names (`ssl.SSLSocket.getpeercert` form), else None."""
    subject = [attribute for rdn in (peercert or {}).get("subject", ()) for attribute in rdn]
    organizations = [value for key, value in subject if key == "organizationName"]
    units = [value for key, value in subject if key == "organizationalUnitName"]
    if organizations == [ORGANIZATION] and len(units) == 1 and units[0] in ROLES:
        return units[0]
    return None


def _subject(peercert: dict | None) -> str:
    return ", ".join(f"{key}={value}" for rdn in (peercert or {}).get("subject", ()) for key, value in rdn) or "none"


def dask_setup(server) -> None:
    """Preload: hold every connection to `server`'s TLS listeners to its role's operations.

    Dask starts its listeners right before it runs preloads, with no await in between: with this
    preload first, no connection is served unchecked.
    """
    policy = next(rules for kind, rules in POLICIES.items() if isinstance(server, kind))
    name = type(server).__name__
    for listener in server.listeners:
        if isinstance(listener, TLSListener):
            listener.comm_handler = functools.partial(_admit, listener.comm_handler, policy, name)
        else:
            log.warning("%s listens without TLS at %s: no certificate, so no role checks; use it only on "
                        "loopback or a trusted network", name, listener.contact_address)


async def _admit(handle_comm, policy: dict[str, Allows], server: str, comm) -> None:
    peercert = comm.extra_info.get("peercert")
    role = certificate_role(peercert)
    if role not in policy:
        log.warning("%s refused a connection from %s: its certificate (%s) names no lid-dask role "
                    "(O=%s, OU=scheduler|worker|client); certificates made without roles must be made again "
                    "with lid-dask certs", server, comm.peer_address, _subject(peercert), ORGANIZATION)
        comm.abort()
        return
    if policy[role] is not None:
        comm.read = _checked(comm, policy[role], server, role)
    await handle_comm(comm)


def _checked(comm, allows: Callable[[dict], bool], server: str, role: str):
    """`comm.read` that lets through only operations (alone or in a batch) that `allows`."""
    read = comm.read

    async def checked_read(deserializers=None):
        message = await read(deserializers)
        for item in message if isinstance(message, (list, tuple)) else (message,):
            if isinstance(item, dict) and "op" in item and not allows(item):
                refusal = (f"{server} refused {item['op']!r} from {comm.peer_address}: a {role} certificate "
                           "may not use it")
                log.warning("%s; connection closed", refusal)
                comm.abort()
                raise CommClosedError(refusal)
        return message
    return checked_read


class _SchedulerPeer(ssl.SSLSocket):
    """A client-side TLS socket whose handshake completes only with the scheduler's certificate.

    distributed turns hostname checking off (one private CA, IP addresses), so without this any
    certificate of the CA, such as the workers' shared one, could pose as the scheduler.
    """

    def do_handshake(self, block=False):
        super().do_handshake(block)
        role = certificate_role(self.getpeercert())
        if role != "scheduler":
            raise ssl.SSLCertVerificationError(ssl.SSL_ERROR_SSL, f"the peer's certificate has lid-dask role "
                                               f"{role}, not scheduler ({_subject(self.getpeercert())})")


class _ClientSecurity(Security):
    def get_connection_args(self, role):
        args = super().get_connection_args(role)
        args["ssl_context"].sslsocket_class = _SchedulerPeer
        return args


def client_security(ca_file: str, cert_file: str, key_file: str) -> Security:
    """TLS settings for a client (the orchestrator) that talks to the scheduler and nobody else."""
    return _ClientSecurity(tls_ca_file=ca_file, tls_client_cert=cert_file, tls_client_key=key_file,
                           require_encryption=True)
