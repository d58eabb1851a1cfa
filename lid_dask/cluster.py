"""One way to get a Dask client: a remote scheduler, local GPUs, or local CPU processes.

`cluster_client` is the context manager the CLI and `Run.execute` use: it connects, and on the
way out closes the client and any local cluster it started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator

import dask
from distributed import Client, LocalCluster

log = logging.getLogger(__name__)

# A batch whose workers died this many times raises KilledWorker, and the orchestrator splits it
# to find the poison file; Dask's default (3) would cost more worker restarts per split.
ALLOWED_FAILURES = 1

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def gpu_count() -> int:
    """GPUs NVML sees; 0 without a driver (the clean test for falling back to CPU)."""
    try:
        from distributed.diagnostics.nvml import device_get_count

        return device_get_count()
    except Exception:  # noqa: BLE001 - no NVML library at all
        return 0


def connect(scheduler: str | None = None, *, security=None, n_workers: int | None = None,
            threads_per_worker: int = 1, dashboard_address: str | None = ":8787", preload: tuple[str, ...] = (),
            **cluster_kwargs) -> Client:
    """A client for `scheduler` (``tcp://`` or ``tls://``, with a `distributed.security.Security`
    for TLS), else a LocalCUDACluster when GPUs exist, else a LocalCluster of processes.

    Local workers get the lid-dask preloads (plus `preload` modules, e.g. plug-in backends; this
    module's `dask_setup` too) and one task thread each (one model per process keeps memory
    predictable); CPU workers also get the machine's cores shared out between them for the model's
    own threads, where Dask would give each one core.
    """
    if scheduler:
        return Client(scheduler, security=security)
    dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES})
    cluster_kwargs.setdefault("silence_logs", logging.WARNING)
    scheduler_kwargs = cluster_kwargs.setdefault("scheduler_kwargs", {})
    scheduler_kwargs.setdefault("preload", ["lid_dask.monitor"])  # the model-behaviour page and metrics
    if dashboard_address is None:  # no dashboard, and its HTTP routes (/health, /metrics) on any free port
        scheduler_kwargs.setdefault("dashboard_address", ":0")
    common = dict(threads_per_worker=threads_per_worker, dashboard_address=dashboard_address,
                  preload=["lid_dask.worker", "lid_dask.cluster", *preload], preload_nanny=["lid_dask.nanny"],
                  **cluster_kwargs)
    if gpu_count() > 0:  # dask-cuda sets each worker's env itself (CUDA_VISIBLE_DEVICES)
        from dask_cuda import LocalCUDACluster

        log.info("starting a LocalCUDACluster on %d GPU(s)", gpu_count())
        cluster = LocalCUDACluster(resources={"GPU": 1}, **common)
    else:
        workers = n_workers or max(1, (os.cpu_count() or 1) // threads_per_worker)
        env = {**model_threads(workers, threads_per_worker), **common.pop("env", {})}
        cluster = LocalCluster(n_workers=workers, processes=True, env=env, **common)
    return Client(cluster)


def dask_setup(worker) -> None:
    """Preload of a local cluster's workers: they ignore SIGINT. Ctrl-C in a terminal reaches every
    process of the foreground group; the workers would die mid-batch with tracebacks, where the
    orchestrator means to let their batches finish and then closes the cluster itself. A batch still
    running then is cancelled by the close, which Dask's state machine reports as a warning (its
    only one): expected here, so not shown."""
    if threading.current_thread() is threading.main_thread():  # a worker process's own loop
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed.worker.state_machine").setLevel(logging.ERROR)


@contextlib.contextmanager
def cluster_client(scheduler: str | None = None, **options) -> Iterator[Client]:
    """`connect(scheduler, **options)` for the length of a ``with`` block."""
    client = connect(scheduler, **options)
    try:
        yield client
    finally:
        cluster = client.cluster
        client.close()
        if cluster is not None:
            # Workers still in a released batch are killed: the nanny's warning saying so is not news.
            nanny_log = logging.getLogger("distributed.nanny")
            level = nanny_log.level
            nanny_log.setLevel(logging.ERROR)
            try:
                cluster.close()
            finally:
                nanny_log.setLevel(level)


def model_threads(workers: int, threads_per_worker: int) -> dict[str, str]:
    """OpenMP/MKL/OpenBLAS threads for each of `workers` processes on this machine: its cores
    shared out (CTranslate2 runs a third slower on one core than on two, benchmarks/DISTRIBUTED.md).
    Not read from this process's environment: a LocalCluster's nannies write Dask's defaults into
    it. Pass ``env=`` to `connect` to choose other values."""
    share = str(max(1, (os.cpu_count() or 1) // (workers * threads_per_worker)))
    return dict.fromkeys(THREAD_VARIABLES, share)
