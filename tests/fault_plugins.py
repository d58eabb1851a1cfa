"""Plug-in backends for fault-injection tests, loaded into worker processes as a preload.

`poison-sensitive` kills its own process (SIGKILL, no Python clean-up) when it meets a window of
constant non-zero samples, as a native decoder or model kernel may crash on one odd file.
`content-hash` answers a language chosen by the samples themselves (see its docstring).
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from lid_dask.models import Backend, register_backend


class PoisonSensitive(Backend):
    backend_name = "poison-sensitive"

    def __init__(self, spec, device="cpu"):
        super().__init__(spec, device)
        self.labels = ["en", "de"]

    def predict(self, windows):
        for window in windows:
            middle = window[len(window) // 4: -len(window) // 4]
            if len(middle) and middle.std() < 1e-3 and abs(middle.mean()) > 0.2:
                os.kill(os.getpid(), signal.SIGKILL)
        return np.tile([0.8, 0.2], (len(windows), 1))


register_backend("poison-sensitive", PoisonSensitive)


class ContentHash(Backend):
    """Answers a language chosen by a hash of the samples it hears, slowly (``?delay=`` seconds per
    window, default 0.2).

    Deterministic and different from file to file, so a result recorded against the wrong file
    shows; slow enough that batches are still running when an orchestrator is stopped.
    """

    backend_name = "content-hash"
    options = frozenset({"delay"})

    def __init__(self, spec, device="cpu"):
        super().__init__(spec, device)
        self.labels = ["en", "de", "fr", "es", "it", "pt", "nl", "sv", "pl", "cs"]
        self.delay = float(spec.options.get("delay", 0.2))

    def predict(self, windows):
        time.sleep(self.delay * len(windows))
        out = np.full((len(windows), len(self.labels)), 0.02, dtype=np.float32)
        for row, window in enumerate(windows):
            digest = int(np.round(window.astype(np.float64) * 32767).astype(np.int64).sum())
            out[row, digest % len(self.labels)] = 0.82
        return out


register_backend("content-hash", ContentHash)


def dask_setup(worker):  # the preload hook; registering at import is all it takes
    pass
