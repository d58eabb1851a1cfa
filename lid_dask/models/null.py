"""The ``null`` backend: answers ``und`` without looking at audio.

It exists to measure what lid-dask itself costs (listing, ledger, scheduler, events) with the
models taken out; the engine skips decoding when every model says it needs no audio.
"""

from __future__ import annotations

import numpy as np

from lid_dask.models.base import Backend, ModelSpec


class NullBackend(Backend):
    backend_name = "null"
    options = frozenset()
    needs_audio = False
    max_batch = 4096

    def __init__(self, spec: ModelSpec, device: str = "cpu"):
        super().__init__(spec, device)
        self.labels = ["und"]

    def predict(self, windows: list[np.ndarray]) -> np.ndarray:
        return np.ones((len(windows), 1), dtype=np.float32)
