"""Is this container's worker ready? Status files that the worker writes and ``lid-dask health`` reads.

A SaladCloud probe runs a command inside the container. The worker serves nothing a probe could ask
(no dashboard; its listeners take only TLS peers of the cluster), so each worker process started by
``lid-dask worker`` writes what it knows to ``$LID_DASK_HEALTH_DIR/NAME.json`` (models loaded, its
scheduler, whether it is registered there with its stream open) every `INTERVAL` seconds, and
`check` reads them: a file no longer refreshed means a stuck worker, a process gone a dead one.

Connected means Dask's own view: a worker whose stream to the scheduler breaks, or whose heartbeat
the scheduler no longer knows (``worker-ttl``), closes itself.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

HEALTH_DIR = "LID_DASK_HEALTH_DIR"
INTERVAL = 2.0  # seconds between writes
MAX_AGE = 30.0  # default staleness limit of `check`: many missed writes, not one slow one
CALLBACK = "lid-dask-health"


def folder() -> Path:
    """``$LID_DASK_HEALTH_DIR``, else ``lid-dask-health`` in the temporary folder."""
    return Path(os.environ.get(HEALTH_DIR) or Path(tempfile.gettempdir()) / "lid-dask-health")


def reset(directory: Path) -> None:
    """Remove the status files of an earlier start: a worker is unhealthy until it writes its own."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.json"):
        path.unlink(missing_ok=True)


class Reporter:
    """Writes one worker's status file; `started` after its models loaded, then every `INTERVAL`
    (the callback starts with the worker's own, once it is registered with the scheduler)."""

    def __init__(self, worker, directory: Path, models: list[str]):
        self.worker = worker
        self.models = models
        self.models_loaded = False
        self.path = directory / f"{re.sub(r'[^A-Za-z0-9._-]', '_', str(worker.name))}.json"
        self.write()

    def started(self) -> None:
        from tornado.ioloop import PeriodicCallback

        self.models_loaded = True
        self.write()
        self.worker.periodic_callbacks[CALLBACK] = PeriodicCallback(self.write, INTERVAL * 1000)

    def write(self) -> None:
        from distributed.core import Status

        comm = self.worker.batched_stream.comm
        connected = self.worker.status == Status.running and comm is not None and not comm.closed()
        status = {"pid": os.getpid(), "name": str(self.worker.name), "scheduler": self.worker.scheduler.address,
                  "status": self.worker.status.name, "models": self.models, "models_loaded": self.models_loaded,
                  "connected": connected, "time": time.time()}
        staging = self.path.with_suffix(".tmp")
        staging.write_text(json.dumps(status))
        os.replace(staging, self.path)  # a reader never sees half a file


def reporter(worker, models: list[str]) -> Reporter | None:
    """A `Reporter` for `worker` when ``$LID_DASK_HEALTH_DIR`` is set (``lid-dask worker`` sets it)."""
    directory = os.environ.get(HEALTH_DIR)
    return Reporter(worker, Path(directory), models) if directory else None


def closing(worker) -> None:
    """The last status of a closing worker (its periodic callbacks have stopped)."""
    if CALLBACK in worker.periodic_callbacks:
        worker.periodic_callbacks[CALLBACK].callback()


def check(directory: Path, max_age: float = MAX_AGE) -> tuple[bool, str]:
    """(healthy, one line saying why): every worker of this container connected with its models."""
    paths = sorted(directory.glob("*.json"))
    if not paths:
        return False, f"no worker has started here yet (no status in {directory})"
    statuses = [json.loads(path.read_text()) for path in paths]
    for status in statuses:
        problem = _problem(status, max_age)
        if problem:
            return False, f"worker {status['name']}: {problem}"
    described = "; ".join(f"worker {s['name']} connected to {s['scheduler']}, models loaded: "
                          f"{', '.join(s['models']) or 'none'}" for s in statuses)
    return True, described


def _problem(status: dict, max_age: float) -> str | None:
    if not _alive(status["pid"]):
        return f"its process ({status['pid']}) has exited"
    age = time.time() - status["time"]
    if age > max_age:
        return f"no status for {age:.0f} s (more than {max_age:.0f} s): the worker is stuck"
    if not status["models_loaded"]:
        return f"loading its models ({', '.join(status['models'])})"
    if not status["connected"]:
        return f"not connected to its scheduler {status['scheduler']} (worker {status['status']})"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True
