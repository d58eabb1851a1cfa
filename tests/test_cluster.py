"""Local clusters from `lid_dask.cluster.connect`: the worker environment the model needs."""

from __future__ import annotations

import os

import pytest

from lid_dask.cluster import connect


def worker_environment() -> dict:
    return {name: os.environ.get(name) for name in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")}


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_share_the_cores_without_dasks_malloc_trim(workers):
    client = connect(n_workers=workers, dashboard_address=None)
    try:
        environments = list(client.run(worker_environment).values())
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    share = str(max(1, os.cpu_count() // workers))
    assert environments == [{"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": share}] * workers
