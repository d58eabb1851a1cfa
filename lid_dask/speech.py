"""Speech detection, so that silence, music and noise do not vote on the language.

Silero VAD ships inside faster-whisper (ONNX, CPU, about 1 ms per second of audio). The energy
detector needs nothing but numpy and is for pipelines that must not load ONNX; it cannot tell
music from speech. ``none`` treats every window as speech.
"""

from __future__ import annotations

import functools

import numpy as np

from lid_dask.audio import SAMPLE_RATE

DETECTORS = ("silero", "energy", "none")
_ENERGY_FRAME = 480  # 30 ms
_ENERGY_THRESHOLD_DB = -40.0  # dBFS: quieter frames are silence (a fixed, conventional level)


def speech_seconds(window: np.ndarray, detector: str = "silero") -> float:
    """Seconds of speech in a 16 kHz mono window."""
    if len(window) == 0:
        return 0.0
    if detector == "silero":
        return _silero(window)
    if detector == "energy":
        return _energy(window)
    if detector == "none":
        return len(window) / SAMPLE_RATE
    raise ValueError(f"unknown speech detector {detector!r}; choose one of {DETECTORS}")


@functools.lru_cache(maxsize=1)
def _silero_options():
    from faster_whisper.vad import VadOptions

    # Silero's defaults, except a shorter silence gap and pad: we measure speech, not cut segments.
    return VadOptions(threshold=0.5, min_silence_duration_ms=300, speech_pad_ms=30)


def _silero(window: np.ndarray) -> float:
    from faster_whisper.vad import get_speech_timestamps

    spans = get_speech_timestamps(np.asarray(window, dtype=np.float32), _silero_options())
    return sum(span["end"] - span["start"] for span in spans) / SAMPLE_RATE


def _energy(window: np.ndarray) -> float:
    usable = len(window) // _ENERGY_FRAME * _ENERGY_FRAME
    if usable == 0:
        return 0.0
    frames = window[:usable].reshape(-1, _ENERGY_FRAME)
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    loud = 20 * np.log10(np.maximum(rms, 1e-10)) > _ENERGY_THRESHOLD_DB
    return float(loud.sum() * _ENERGY_FRAME / SAMPLE_RATE)
