"""One way to get a Dask client: a remote scheduler, local GPUs, or local CPU processes."""

from __future__ import annotations

import logging

import dask
from distributed import Client, LocalCluster

log = logging.getLogger(__name__)

# A batch whose workers died this many times raises KilledWorker, and the orchestrator splits it
# to find the poison file; Dask's default (3) would cost more worker restarts per split.
ALLOWED_FAILURES = 1


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

    Local workers get the lid-dask preload (plus `preload` modules, e.g. plug-in backends) and one
    thread each: the models use every core of their process already, and one model per process
    keeps memory predictable.
    """
    if scheduler:
        return Client(scheduler, security=security)
    dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES})
    cluster_kwargs.setdefault("silence_logs", logging.WARNING)
    if gpu_count() > 0:
        from dask_cuda import LocalCUDACluster

        log.info("starting a LocalCUDACluster on %d GPU(s)", gpu_count())
        cluster = LocalCUDACluster(threads_per_worker=threads_per_worker, dashboard_address=dashboard_address,
                                   preload=["lid_dask.worker", *preload], resources={"GPU": 1}, **cluster_kwargs)
    else:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
                               dashboard_address=dashboard_address, preload=["lid_dask.worker", *preload],
                               **cluster_kwargs)
    return Client(cluster)
