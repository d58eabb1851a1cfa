"""``lid-dask worker | scheduler | certs | health``: the cluster's processes, one entrypoint per role.

`worker` and `scheduler` run Dask's own command line in this process (``dask worker``, ``dask cuda
worker``, ``dask scheduler``), so signals reach Dask directly as if it had been exec'd, and this
process can still remove the private TLS folder when Dask returns.

Settings for nodes that vanish without warning (SaladCloud: no SIGTERM grace is promised):

- ``worker-ttl`` (scheduler, default 60 s here, Dask's is 5 minutes): a worker that has not
  heartbeated for that long is removed and its batch goes to another worker. Workers heartbeat as
  often as the scheduler asks: every 0.5 s up to 10 workers, 2 s up to 200, n/200 + 1 s beyond
  (3.5 s at 500 nodes), and Dask never lets the TTL fall below ten intervals; a busy worker still
  heartbeats (the batch runs in a thread; CTranslate2 and FFmpeg release the GIL).
- Dask's TCP timeout (``distributed.comm.timeouts.tcp``, 30 s, kept): a connection whose peer has
  vanished fails within it (keep-alive probes and TCP_USER_TIMEOUT), usually before the TTL. A
  worker that loses its scheduler closes and ``lid-dask worker`` exits, as it does when the
  scheduler cannot be reached for 30 s at start (``distributed.comm.timeouts.connect``: the nanny
  registers first); the container restarts and tries again.
- The worker's name is the node's (``SALAD_MACHINE_ID``): a node that vanished and comes back joins
  once the scheduler has dropped its previous worker (Dask refuses a name in use), within the TCP
  timeout or at most the TTL; until then its container exits and restarts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

from lid_dask import health

WORKER_PRELOADS = ("lid_dask.security", "lid_dask.worker")  # security first: nothing is served unchecked
NANNY_PRELOADS = ("lid_dask.security", "lid_dask.nanny")
SCHEDULER_PRELOADS = ("lid_dask.security", "lid_dask.monitor")
# The dashboard's routes: Dask's defaults less distributed.http.proxy (it forwards requests to
# whatever host and port a worker claims for its dashboard); distributed.http.scheduler.api
# (unauthenticated POSTs such as retire_workers) stays out.
HTTP_ROUTES = ["distributed.http.scheduler.prometheus", "distributed.http.scheduler.info",
               "distributed.http.scheduler.json", "distributed.http.health", "distributed.http.statics"]
WORKER_TTL = "60s"


def add_commands(commands) -> None:
    worker = commands.add_parser(
        "worker", help="start a lid-dask Dask worker (a container's command)",
        description="Start one Dask worker with lid-dask's preloads: `dask cuda worker` with a GPU=1 resource "
                    "when GPUs exist, else `dask worker`; one task thread; models from $LID_DASK_MODELS "
                    "(default whisper-ct2:bundled) loaded before it joins. It only connects out.")
    worker.add_argument("scheduler", nargs="?", metavar="ADDRESS",
                        help="the scheduler, tls://host:8786 (default $LID_DASK_SCHEDULER)")
    worker.add_argument("--name", help="the worker's name (default $SALAD_MACHINE_ID, else the host name)")
    worker.add_argument("--host", help="the address to listen on (default: Dask's choice of interface)")
    _certificates(worker, "worker")
    worker.set_defaults(handler=worker_command)

    scheduler = commands.add_parser(
        "scheduler", help="start the lid-dask Dask scheduler (TLS, role checks, monitor)",
        description="Start the Dask scheduler over TLS with lid-dask's preloads (role checks, the model-behaviour "
                    "page and metrics); the dashboard answers on loopback only.")
    scheduler.add_argument("--host", default="0.0.0.0", help="the address to listen on (default 0.0.0.0)")
    scheduler.add_argument("--port", type=int, default=8786, help="default 8786")
    scheduler.add_argument("--dashboard-address", default="127.0.0.1:8787", metavar="HOST:PORT",
                           help="the dashboard and /metrics, unauthenticated (default 127.0.0.1:8787: reach it "
                                "through an SSH tunnel)")
    scheduler.add_argument("--worker-ttl", default=WORKER_TTL, metavar="DURATION",
                           help=f"remove a worker silent this long (default {WORKER_TTL})")
    scheduler.add_argument("--preload", action="append", default=[], metavar="MODULE",
                           help="another scheduler preload, after lid-dask's (repeatable)")
    _certificates(scheduler, "scheduler")
    scheduler.set_defaults(handler=scheduler_command)

    certs = commands.add_parser(
        "certs", help="make the cluster's CA and the scheduler, worker and client certificates",
        description="Make a private CA and a key and certificate per role in OUT_DIR (keys 0600); with --env, "
                    "print the worker's as LID_DASK_TLS_* variables for a container's secrets.")
    certs.add_argument("folder", metavar="OUT_DIR")
    certs.add_argument("--host", action="append", default=[], dest="hosts", metavar="NAME",
                       help="a name or IP address of the scheduler for its certificate (repeatable; localhost and "
                            "127.0.0.1 are always in it)")
    certs.add_argument("--env", action="store_true",
                       help="print the worker's CA, certificate and key as LID_DASK_TLS_CA/CERT/KEY=PEM lines "
                            "(newlines as \\n); made first if OUT_DIR holds none")
    certs.set_defaults(handler=certs_command)

    probe = commands.add_parser(
        "health", help="exit 0 if this container's worker is connected with its models loaded",
        description="A startup or liveness probe for a container running `lid-dask worker`: exit 0 if its worker "
                    "has loaded its models and is connected to its scheduler, else 1; one line says why.")
    probe.add_argument("--max-age", type=float, default=health.MAX_AGE, metavar="SECONDS",
                       help=f"a status older than this means a stuck worker (default {health.MAX_AGE:g})")
    probe.set_defaults(handler=health_command)


def _certificates(parser, role: str) -> None:
    parser.add_argument("--certs", metavar="DIR",
                        help=f"a folder with ca.pem, {role}.pem and {role}.key (made by `lid-dask certs`); default: "
                             "the PEM text in $LID_DASK_TLS_CA, $LID_DASK_TLS_CERT and $LID_DASK_TLS_KEY")


def worker_command(args) -> int:
    from lid_dask.cluster import gpu_count, model_threads
    from lid_dask.models import DEFAULT_MODEL

    address = args.scheduler or os.environ.get("LID_DASK_SCHEDULER")
    if not address:
        raise ValueError("no scheduler: give its address (tls://host:8786) or set LID_DASK_SCHEDULER")
    name = args.name or os.environ.get("SALAD_MACHINE_ID") or socket.gethostname()
    gpus = gpu_count()
    os.environ.setdefault("LID_DASK_MODELS", DEFAULT_MODEL)  # loaded by the lid_dask.worker preload
    if not gpus:  # the model's own threads: every core (Dask would give it one)
        for variable, value in model_threads(1, 1).items():
            os.environ.setdefault(variable, value)
    os.environ.setdefault(health.HEALTH_DIR, str(health.folder()))
    health.reset(Path(os.environ[health.HEALTH_DIR]))
    argv = [address, "--name", name, "--nthreads", "1", "--no-dashboard",
            *_each("--preload", WORKER_PRELOADS), *(["--host", args.host] if args.host else [])]
    if gpus:  # one worker per GPU; dask cuda worker has no --preload-nanny: the nannies read the config
        command, program = _cuda_worker(), "dask cuda worker"
        argv += ["--resources", "GPU=1"]
        config = {"distributed.nanny.preload": list(NANNY_PRELOADS)}
    else:
        from distributed.cli.dask_worker import main as command

        program = "dask worker"
        argv += ["--nworkers", "1", *_each("--preload-nanny", NANNY_PRELOADS)]
        config = {}
    _exit_on_sigterm()
    with _tls(args, "worker", required=address.startswith("tls://")) as tls:
        print(f"lid-dask worker {name}: {program} on {gpus} GPU(s), models {os.environ['LID_DASK_MODELS']}, "
              f"scheduler {address}", file=sys.stderr)
        return _run_dask(command, argv + tls, program, config)


def _cuda_worker():
    try:
        from dask_cuda.cli import worker
    except ImportError as exc:
        raise RuntimeError(f"this node has GPUs but dask-cuda does not load ({exc}): pip install 'lid-dask[gpu]'") \
            from None
    return worker


def scheduler_command(args) -> int:
    from lid_dask.cluster import ALLOWED_FAILURES

    argv = ["--protocol", "tls", "--host", args.host, "--port", str(args.port),
            "--dashboard-address", args.dashboard_address, "--no-jupyter",
            *_each("--preload", [*SCHEDULER_PRELOADS, *args.preload])]
    config = {
        # A batch whose workers died twice raises KilledWorker, and the orchestrator splits it to
        # find the poison file (lid_dask/orchestrator.py).
        "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
        "distributed.scheduler.http.routes": HTTP_ROUTES,
        "distributed.scheduler.worker-ttl": args.worker_ttl,
    }
    _exit_on_sigterm()
    with _tls(args, "scheduler", required=True) as tls:
        from distributed.cli.dask_scheduler import main as command

        return _run_dask(command, argv + tls, "dask scheduler", config)


@contextlib.contextmanager
def _tls(args, role: str, required: bool):
    """Dask's --tls-* options for `role`, from --certs or the LID_DASK_TLS_* variables."""
    from lid_dask.tls import ENV_VARIABLES, role_files

    with role_files(role, args.certs) as files:
        if files is None and required:
            raise ValueError(f"no TLS certificates: give --certs DIR or set {', '.join(ENV_VARIABLES)} "
                             "(make them with `lid-dask certs`)")
        yield [] if files is None else [arg for option, path in zip(("--tls-ca-file", "--tls-cert", "--tls-key"), files)
                                        for arg in (option, str(path))]


def _each(option: str, values) -> list[str]:
    return [arg for value in values for arg in (option, value)]


def _exit_on_sigterm() -> None:
    """SIGTERM before Dask installs its own handler still unwinds (and removes the TLS folder)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def _run_dask(command, argv: list[str], program: str, config: dict) -> int:
    import dask

    with dask.config.set(config):
        command.main(args=argv, prog_name=program, standalone_mode=False)
    return 0


def certs_command(args) -> int:
    from lid_dask.tls import environment_form, make_certificates

    folder = Path(args.folder)
    if not (args.env and (folder / "ca.pem").exists()):
        make_certificates(folder, args.hosts)
        print(f"wrote ca.pem and {{scheduler,worker,client}}.{{pem,key}} to {folder}: give the scheduler ca.pem and "
              "scheduler.*, the workers ca.pem and worker.*, the orchestrator ca.pem and client.*; keep ca.key "
              "offline", file=sys.stderr)
    if args.env:
        sys.stdout.write(environment_form(folder))
    return 0


def health_command(args) -> int:
    healthy, reason = health.check(health.folder(), args.max_age)
    print(reason, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1
