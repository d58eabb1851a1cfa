"""Plug-in backends for fault-injection tests, loaded into worker processes as a preload.

`poison-sensitive` kills its own process (SIGKILL, no Python clean-up) when it meets a window of
constant non-zero samples, as a native decoder or model kernel may crash on one odd file.
"""

from __future__ import annotations

import os
import signal

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


def dask_setup(worker):  # the preload hook; registering at import is all it takes
    pass
