"""What runs on a Dask worker: the batch task and the worker preload.

Workers on SaladCloud accept no inbound connections, so nothing here may depend on the client or
the scheduler reaching the worker: results and fingerprints leave through the worker's own
connection to the scheduler, as events (`Worker.log_event`), which the orchestrator subscribes to.
Workers hold no database credentials nor the orchestrator's storage credentials (task arguments
carry none; see `lid_dask.storage`); they only identify audio.
"""

from __future__ import annotations

import functools
import os

from distributed import get_worker

from lid_dask import fingerprint as fp
from lid_dask import health
from lid_dask.config import IdentifyConfig
from lid_dask.engine import Identifier
from lid_dask.storage import worker_options

RESULTS_TOPIC = "lid-dask-results"
FINGERPRINT_TOPIC = "lid-dask-fingerprint"


@functools.lru_cache(maxsize=4)
def _identifier(config_json: str) -> Identifier:
    """One Identifier per run configuration per worker process: models stay loaded across tasks.

    The run's storage options carry no credentials; the worker's own environment supplies them.
    """
    config = IdentifyConfig.from_json(config_json)
    return Identifier(config, storage_options=worker_options(config.storage_options))


def worker_fingerprint(config_json: str) -> dict:
    return fp.environment(_identifier(config_json).fingerprint())


def identify_batch_task(run: str, batch: str, uris: list[str], config_json: str) -> int:
    """Identify `uris` and send the results to the orchestrator as one event; return the count.

    `batch` is the orchestrator's token for this batch: the event must quote it to be accepted.
    """
    results = _identifier(config_json).identify_batch(uris)
    worker = get_worker()
    environment = worker_fingerprint(config_json)
    worker.log_event(RESULTS_TOPIC, {
        "run": run, "batch": batch, "worker": str(worker.name), "address": worker.address,
        "fingerprint": environment, "results": [r.to_dict() for r in results],
    })
    return len(results)


def dask_setup(worker) -> None:
    """Worker preload (``dask worker --preload lid_dask.worker``): load models before the first task.

    ``LID_DASK_MODELS`` (comma-separated specs) names the models to warm up; the fingerprint
    is published so that the orchestrator sees a drifted worker even before it runs a batch.
    With ``LID_DASK_HEALTH_DIR`` (``lid-dask worker``), the worker's status is written there for
    ``lid-dask health``. Preloads run before the worker registers with the scheduler.
    """
    specs = [m for m in os.environ.get("LID_DASK_MODELS", "").split(",") if m]
    status = health.reporter(worker, specs)
    if specs:
        config_json = IdentifyConfig(models=tuple(specs)).to_json()
        worker.log_event(FINGERPRINT_TOPIC, {"worker": str(worker.name),
                                             "fingerprint": worker_fingerprint(config_json)})
    if status:
        status.started()


def dask_teardown(worker) -> None:
    health.closing(worker)
