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


class ToneLanguage(Backend):
    """Answers the language whose tone (`tone`) is loudest in the window, with the window's peak
    amplitude as its probability.

    A test decides each file's language and confidence when it writes it (`write_tone`), so a run
    of a thousand sub-second files has whatever language mix the test wants (monitoring's drift
    tests) at a few milliseconds a file.
    """

    backend_name = "tone-language"
    options = frozenset()
    LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "ja", "zh")
    RATE = 16_000

    def __init__(self, spec, device="cpu"):
        super().__init__(spec, device)
        self.labels = list(self.LANGUAGES)

    @classmethod
    def labels_for(cls, spec):
        return list(cls.LANGUAGES)

    @classmethod
    def tone(cls, language: str) -> float:
        """The frequency (Hz) that means `language`: 300 Hz apart, far more than a short window's
        spectral resolution."""
        return 400.0 + 300.0 * cls.LANGUAGES.index(language)

    def predict(self, windows):
        out = np.zeros((len(windows), len(self.labels)), dtype=np.float32)
        tones = np.array([self.tone(language) for language in self.LANGUAGES])
        for row, window in enumerate(windows):
            spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))
            loudest = np.fft.rfftfreq(len(window), 1 / self.RATE)[int(np.argmax(spectrum))]
            best = int(np.argmin(np.abs(tones - loudest)))
            probability = float(np.clip(np.abs(window).max(), 0.05, 0.99))
            out[row] = (1 - probability) / (len(self.labels) - 1)
            out[row, best] = probability
        return out


register_backend("tone-language", ToneLanguage)


def write_tone(path, language: str, seconds: float = 0.6, amplitude: float = 0.9) -> None:
    """A 16 kHz mono WAV file that `ToneLanguage` hears as `language` with probability about
    `amplitude` (its peak)."""
    import soundfile

    t = np.arange(int(seconds * ToneLanguage.RATE)) / ToneLanguage.RATE
    soundfile.write(str(path), amplitude * np.sin(2 * np.pi * ToneLanguage.tone(language) * t), ToneLanguage.RATE,
                    subtype="PCM_16")
