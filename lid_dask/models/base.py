"""The backend interface every language-ID model implements.

A backend takes a batch of 16 kHz mono windows and returns, per window, a probability for each of
its languages. Languages are standard tags (see `lid_dask.languages`) so that backends with
different label sets can vote together. Everything else (windowing, VAD, consensus) is the
engine's job, which keeps a new backend to a few dozen lines.
"""

from __future__ import annotations

import abc
import hashlib
import os
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ModelSpec:
    """``backend[:source][?key=value&...]``, e.g. ``whisper-ct2:bundled?compute_type=int8``."""

    backend: str
    source: str | None = None
    options: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        body, _, query = text.strip().partition("?")
        backend, _, source = body.partition(":")
        options = {}
        for pair in filter(None, query.split("&")):
            key, sep, value = pair.partition("=")
            if not sep:
                raise ValueError(f"bad model option {pair!r} in {text!r}; expected key=value")
            options[key] = value
        if not backend:
            raise ValueError(f"empty model spec {text!r}")
        return cls(backend, source or None, options)

    def __str__(self) -> str:
        text = self.backend + (f":{self.source}" if self.source else "")
        if self.options:
            text += "?" + "&".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return text

    def __hash__(self) -> int:
        return hash(str(self))

    @property
    def name(self) -> str:
        """Short name for result columns: the backend, plus the source unless it is the default."""
        return self.backend if self.source in (None, "bundled") else str(self)


class Backend(abc.ABC):
    """A loaded model. Subclasses set `labels` and implement `predict`."""

    #: name the registry knows this backend by
    backend_name: str = ""
    #: how many windows one `predict` call should get at most
    max_batch: int = 16
    #: False for backends that never look at audio (the engine then skips decoding)
    needs_audio: bool = True
    #: the ``?option=`` names a spec may give; None: not declared (a plug-in's options go unchecked)
    options: frozenset[str] | None = None

    @classmethod
    def labels_for(cls, spec: ModelSpec) -> list[str] | None:
        """The languages the model answers, if known without loading it (None: unknown)."""
        return None

    def __init__(self, spec: ModelSpec, device: str = "cpu"):
        self.spec = spec
        self.device = device
        self.labels: list[str] = []

    @property
    def name(self) -> str:
        return self.spec.name

    @abc.abstractmethod
    def predict(self, windows: list[np.ndarray]) -> np.ndarray:
        """Probabilities ``[len(windows), len(self.labels)]`` for 16 kHz mono float32 windows."""

    def rechecked(self) -> tuple[int, ...]:
        """Which windows of this thread's last `predict` call the model listened to again (a
        second, longer look; monitoring reports the rate). None by default."""
        return ()

    def fingerprint(self) -> dict:
        """What identifies this model's behaviour: spec, device and the weights' checksum."""
        return {"name": self.name, "spec": str(self.spec), "backend": self.backend_name, "device": self.device}


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file, read in chunks by `hashlib.file_digest` (weights are hundreds of MB)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def torch_dtype(spec: ModelSpec, device: str):
    """The ``dtype`` option of torch backends: float16 on CUDA and float32 elsewhere by default."""
    import torch  # torch backends only; the default backend does not need torch

    name = spec.options.get("dtype", "float16" if device.startswith("cuda") else "float32")
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r} in model spec {str(spec)!r}; use float32, float16 or bfloat16")
    return dtype


def pad_to(window: np.ndarray, length: int) -> np.ndarray:
    """Pad audio with silence (zeros) to `length` samples, or cut it; Whisper expects a fixed context."""
    if len(window) >= length:
        return window[:length]
    return np.pad(window, (0, length - len(window)))
