"""Nanny preload (``dask worker --preload-nanny lid_dask.nanny``): the worker process's environment.

Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``
(``distributed.nanny.pre-spawn-environ``). Setting it turns off glibc's dynamic mmap threshold,
so the model's large per-batch buffers are mapped and zeroed afresh on every call: CTranslate2
runs at about half speed (benchmarks/DISTRIBUTED.md). An environment variable can override that
config key but not remove it, so the nanny drops it here, before it spawns the worker. A value
set explicitly in the nanny's own environment is kept: the worker inherits it anyway.
"""

from __future__ import annotations

MALLOC_TRIM = "MALLOC_TRIM_THRESHOLD_"


def dask_setup(nanny) -> None:
    value = nanny.pre_spawn_env.pop(MALLOC_TRIM, None)
    if value is not None and nanny.env.get(MALLOC_TRIM) == value:  # the nanny copies it into env too
        del nanny.env[MALLOC_TRIM]
