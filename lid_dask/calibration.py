"""Fitted calibration maps, as the engine applies them: numpy only.

Inference must not load the evaluation stack (Dask dataframes, xarray, SciPy, matplotlib) on
every worker; `lid_dask.evaluation.calibration` fits these maps and explains the methods.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _expit(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # the logistic function, without overflow


@dataclass(frozen=True)
class TemperatureScaling:
    """``softmax(log p / temperature)``: temperature > 1 softens an overconfident model."""

    temperature: float
    n: int  # examples it was fitted on

    def apply(self, probabilities) -> np.ndarray:
        """Calibrated distributions (rows of `probabilities` are the model's distributions)."""
        scaled = np.log(np.clip(np.asarray(probabilities, dtype=float), 1e-12, None)) / self.temperature
        scaled -= scaled.max(axis=-1, keepdims=True)
        exp = np.exp(scaled)
        return exp / exp.sum(axis=-1, keepdims=True)

    def to_dict(self) -> dict:
        return {"method": "temperature", **asdict(self)}


@dataclass(frozen=True)
class PlattScaling:
    """``sigmoid(a * logit(confidence) + b)`` for a model's top confidence."""

    a: float
    b: float
    n: int  # examples it was fitted on

    def apply(self, confidence) -> np.ndarray:
        c = np.clip(np.asarray(confidence, dtype=float), _EPS, 1 - _EPS)
        return _expit(self.a * _logit(c) + self.b)

    def to_dict(self) -> dict:
        return {"method": "platt", **asdict(self)}


Calibration = TemperatureScaling | PlattScaling


def from_dict(params: dict) -> Calibration:
    """Inverse of ``to_dict`` (e.g. after storing it with the model's fingerprint)."""
    kinds = {"temperature": TemperatureScaling, "platt": PlattScaling}
    params = dict(params)
    method = params.pop("method", None)
    if method not in kinds:
        raise ValueError(f"unknown calibration method {method!r}; known: {', '.join(kinds)}")
    return kinds[method](**params)
