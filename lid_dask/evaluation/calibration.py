"""Calibrated confidence: make "0.9" mean right nine times in ten, per model.

Two methods, both monotone in the model's own score, so they never change which language wins
or the order in which files would be rejected; they only fix what the number means.

- Temperature scaling (Guo et al. 2017), when the model's probability vectors are at hand:
  ``softmax(log p / T)`` with one T fitted by minimising the negative log-likelihood of the true
  language. One parameter, cannot overfit a small labelled set, and keeps a full distribution,
  which is what the consensus rule averages. Rows whose true language the model cannot output
  carry no information about T and are left out of the fit.
- Platt scaling on the logit of the top confidence, when only (confidence, correct) pairs exist,
  as in the ledger (it keeps each model's top probability, not its vector):
  ``sigmoid(a * logit(c) + b)`` fitted by logistic regression. It is the two-class analogue of
  temperature scaling (a = 1/T, b = 0) plus a bias for models that are over- or under-confident
  by a constant, still only two parameters. Histogram binning was not chosen: it needs many more
  parameters (one per bin) and turns confidences into a few steps, so files can no longer be
  ranked within a bin. The fit needs only counts of correct answers per value of logit(c)
  rounded to 0.01, which a Dask group-by gives for any number of rows; a weak Gaussian prior
  centred on the identity (a = 1, b = 0; worth one example) keeps the fit defined when a
  model is never (or always) wrong.

The fitted maps themselves live in `lid_dask.calibration` (numpy only), which the engine applies.

Evaluate a calibration only on files not used to fit it: `split_by_uri` splits by a hash of the
URI, so the split is the same on every machine and does not move when files are added.
"""

from __future__ import annotations

import hashlib

import dask
import numpy as np
import pandas as pd
import xarray as xr
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, logit

from lid_dask.calibration import Calibration, PlattScaling, TemperatureScaling, from_dict
from lid_dask.evaluation.metrics import (as_dask, bin_coords, check_curve_bins, prepared, reliability_arrays,
                                         reliability_bins)

__all__ = ["Calibration", "PlattScaling", "TemperatureScaling", "applied_calibrations", "apply_calibrations",
           "calibration_effect", "fit_per_model", "fit_platt", "fit_temperature", "from_dict", "split_by_uri",
           "undo_calibrations"]

_EPS = 1e-6
_RESOLUTION = 0.01  # logit(confidence) is rounded to this for the Platt fit
_PRIOR = 1.0  # weight of the identity prior, in examples


def fit_temperature(probabilities, true_index) -> TemperatureScaling:
    """Fit T on probability vectors [n, k] and the column of each row's true language
    (-1 where the model cannot output it: such rows are left out)."""
    probabilities = np.asarray(probabilities, dtype=float)
    true_index = np.asarray(true_index)
    keep = true_index >= 0
    logp = np.log(np.clip(probabilities[keep], 1e-12, None))
    rows = np.arange(keep.sum())
    truth = true_index[keep]

    def nll(log_t: float) -> float:
        return -log_softmax(logp / np.exp(log_t), axis=1)[rows, truth].mean()

    best = minimize_scalar(nll, bounds=(np.log(0.05), np.log(50.0)), method="bounded")
    return TemperatureScaling(float(np.exp(best.x)), int(keep.sum()))


def fit_platt(confidence, correct, weight=None) -> PlattScaling:
    """Logistic regression of correctness on logit(confidence), by Newton's method (two
    parameters, convex with the prior: a handful of steps). `weight` counts repeated rows."""
    x = logit(np.clip(np.asarray(confidence, dtype=float), _EPS, 1 - _EPS))
    y = np.asarray(correct, dtype=float)
    w = np.ones_like(x) if weight is None else np.asarray(weight, dtype=float)
    design = np.stack([x, np.ones_like(x)], axis=1)
    prior = np.array([1.0, 0.0])

    def loss(theta: np.ndarray) -> float:
        z = design @ theta
        return float(w @ (np.logaddexp(0, z) - y * z) + _PRIOR / 2 * np.sum((theta - prior) ** 2))

    theta = prior
    for _ in range(100):
        p = expit(design @ theta)
        gradient = design.T @ (w * (p - y)) + _PRIOR * (theta - prior)
        hessian = (design * (w * p * (1 - p))[:, None]).T @ design + _PRIOR * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        while loss(theta - step) > loss(theta) and np.abs(step).max() > 1e-12:
            step = step / 2  # damped Newton: never go uphill (saturated starts overshoot)
        theta = theta - step
        if np.abs(step).max() < 1e-10:
            break
    return PlattScaling(float(theta[0]), float(theta[1]), int(round(w.sum())))


def fit_per_model(frame) -> dict[str, PlattScaling]:
    """Platt scaling per model (``consensus`` included) on an evaluation frame (Dask or pandas:
    model, predicted, confidence, label). Only aggregates are computed, not the rows."""
    rows = prepared(frame)
    rows = rows[rows["conf_bin"] >= 0]  # answered, with a confidence
    rows = rows.assign(x=rows["conf"].map_partitions(_logit_key, meta=("conf", "int64")))
    table = rows.groupby(["model", "x"])[["rows", "correct"]].sum().compute().reset_index()
    return {str(model): fit_platt(expit(group["x"] * _RESOLUTION), group["correct"] / group["rows"], group["rows"])
            for model, group in table.groupby("model")}


def apply_calibrations(frame, calibrations: dict[str, PlattScaling], column: str = "calibrated"):
    """Add `column`: each row's confidence calibrated for its model (unchanged for models
    without a calibration)."""
    def calibrate(part: pd.DataFrame) -> pd.DataFrame:
        out = pd.to_numeric(part["confidence"], errors="coerce").to_numpy(dtype=float).copy()
        for model, fitted in calibrations.items():
            mask = (part["model"] == model).to_numpy()
            out[mask] = fitted.apply(out[mask])
        return part.assign(**{column: out})

    ddf = as_dask(frame)
    return ddf.map_partitions(calibrate, meta=calibrate(ddf._meta))


def undo_calibrations(frame, calibrations: dict[str, Calibration]):
    """The frame with each model's confidence as the model itself gave it, before the Platt
    scalings in `calibrations` were applied. A new calibration must be fitted on those: it
    replaces the old one, so new runs apply it to the model's own confidence. The inverse of
    ``sigmoid(a logit(c) + b)`` is the Platt scaling (1/a, -b/a); temperature scaling reshaped
    whole distributions, whose top alone cannot be undone: an error."""
    for model, fitted in calibrations.items():
        if not isinstance(fitted, PlattScaling):
            raise ValueError(f"the answers of {model} went through {fitted.to_dict()['method']} scaling, which "
                             "cannot be undone from their top confidence: calibrate a run made without it")
    inverses = {model: PlattScaling(1 / f.a, -f.b / f.a, f.n) for model, f in calibrations.items()}
    return apply_calibrations(frame, inverses, column="confidence")


def calibration_effect(frame, calibrations: dict[str, PlattScaling] | None = None,
                       bins: int | None = None) -> xr.Dataset:
    """ECE and reliability curves before and after calibration (dim ``stage``: raw, calibrated).

    `frame` must be held-out data (see `split_by_uri`). With `calibrations`, they are applied
    here; without, the frame must already hold a ``calibrated`` column (e.g. the top of
    temperature-scaled vectors). Variables are prefixed ``calibration_`` so the result merges
    into an `evaluate` Dataset (``ds.merge(effect, compat="no_conflicts", join="outer")``)
    and the report draws it. The curves have their own dim, ``calibration_bin``: by default
    their bins follow the number of held-out files (`reliability_bins`), fewer than evaluated.
    """
    check_curve_bins(bins)
    ddf = apply_calibrations(frame, calibrations) if calibrations is not None else as_dask(frame)
    tables = dask.compute(*[
        prepared(ddf.assign(confidence=ddf[column])).groupby(["model", "conf_bin"])[["rows", "conf", "correct"]].sum()
        for column in ("confidence", "calibrated")
    ])
    models = sorted({str(m) for table in tables for m in table.index.get_level_values("model")})
    files = tables[0]["rows"].groupby(level="model").sum()
    bins = bins or reliability_bins(int(files.max()) if len(files) else 0)
    stages = [reliability_arrays(table, models, bins) for table in tables]

    def stacked(key: str) -> np.ndarray:
        return np.stack([stage[key] for stage in stages], axis=1)

    return xr.Dataset({
        "calibration_ece": (("model", "stage"), stacked("ece")),
        "calibration_count": (("model", "stage", "calibration_bin"), stacked("count")),
        "calibration_confidence": (("model", "stage", "calibration_bin"), stacked("confidence")),
        "calibration_accuracy": (("model", "stage", "calibration_bin"), stacked("accuracy")),
    }, coords={"model": models, "stage": ["raw", "calibrated"], **bin_coords(bins, "calibration_bin")})


def applied_calibrations(info) -> dict[str, dict]:
    """The stored calibrations a run's answers went through (`info`: its `RunInfo`): those in its
    settings that were fitted on the weights it loaded (the engine's rule, `Identifier._check_calibrations`)."""
    stored = info.config.get("identify", {}).get("calibrations") or {}
    loaded = {m.get("name"): m.get("model_sha256") for m in (info.fingerprint or {}).get("models", [])}
    return {model: entry for model, entry in stored.items()
            if not (entry.get("model_sha256") and loaded.get(model) and entry["model_sha256"] != loaded[model])}


def split_by_uri(frame, test_fraction: float = 0.3, salt: str = ""):
    """(fit, held-out) parts of a frame, by a SHA-256 hash of salt + uri: deterministic, and a
    file stays on its side when others are added. Works on pandas and Dask frames."""
    held_out = frame["uri"].map_partitions(_held_out, test_fraction, salt, meta=("uri", bool)) \
        if hasattr(frame, "map_partitions") else _held_out(frame["uri"], test_fraction, salt)
    return frame[~held_out], frame[held_out]


def _held_out(uris: pd.Series, fraction: float, salt: str) -> pd.Series:
    limit = int(fraction * 2**64)
    return uris.map(lambda uri: int.from_bytes(hashlib.sha256(f"{salt}{uri}".encode()).digest()[:8], "big") < limit
                    ).astype(bool)


def _logit_key(conf: pd.Series) -> pd.Series:
    return np.round(logit(np.clip(conf, _EPS, 1 - _EPS)) / _RESOLUTION).astype("int64")
