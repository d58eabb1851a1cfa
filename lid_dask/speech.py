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


def speech_spans(window: np.ndarray, detector: str = "silero") -> list[tuple[float, float]]:
    """(start, end) seconds of speech in a 16 kHz mono window, from the window's start."""
    if len(window) == 0:
        return []
    if detector == "silero":
        return _silero(window)
    if detector == "energy":
        return _energy(window)
    if detector == "none":
        return [(0.0, len(window) / SAMPLE_RATE)]
    raise ValueError(f"unknown speech detector {detector!r}; choose one of {DETECTORS}")


def speech_seconds(window: np.ndarray, detector: str = "silero") -> float:
    """Seconds of speech in a 16 kHz mono window."""
    return sum(end - start for start, end in speech_spans(window, detector))


@functools.lru_cache(maxsize=1)
def _silero_options():
    from faster_whisper.vad import VadOptions

    # Silero's defaults, except a shorter silence gap and pad: we measure speech, not cut segments.
    return VadOptions(threshold=0.5, min_silence_duration_ms=300, speech_pad_ms=30)


def _silero(window: np.ndarray) -> list[tuple[float, float]]:
    from faster_whisper.vad import get_speech_timestamps

    spans = get_speech_timestamps(np.asarray(window, dtype=np.float32), _silero_options())
    return [(span["start"] / SAMPLE_RATE, span["end"] / SAMPLE_RATE) for span in spans]


def _energy(window: np.ndarray) -> list[tuple[float, float]]:
    usable = len(window) // _ENERGY_FRAME * _ENERGY_FRAME
    if usable == 0:
        return []
    frames = window[:usable].reshape(-1, _ENERGY_FRAME)
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    loud = 20 * np.log10(np.maximum(rms, 1e-10)) > _ENERGY_THRESHOLD_DB
    # Runs of loud frames: where `loud` switches on and off.
    edges = np.flatnonzero(np.diff(np.concatenate([[False], loud, [False]]).astype(np.int8)))
    frame = _ENERGY_FRAME / SAMPLE_RATE
    return [(float(on * frame), float(off * frame)) for on, off in zip(edges[::2], edges[1::2])]
