"""ECE on distributions where it is known analytically; calibration reduces it on held-out files."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit, softmax

from lid_dask.evaluation import calibration
from lid_dask.evaluation.metrics import evaluate, expected_calibration_error


def labelled(confidence: np.ndarray, p_correct: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """An evaluation frame whose answers are right with probability `p_correct`."""
    rng = np.random.default_rng(seed)
    correct = rng.random(len(confidence)) < p_correct
    label = rng.choice(["en", "de", "fr"], len(confidence))
    wrong = np.where(label == "en", "de", "en")
    return pd.DataFrame({"uri": [f"s3://set/{i}.wav" for i in range(len(confidence))], "model": "m", "label": label,
                         "predicted": np.where(correct, label, wrong), "confidence": confidence})


def constant_gap(n: int, gap: float, seed: int = 0) -> pd.DataFrame:
    """Confidence ~ U(gap, 1) and P(correct | confidence) = confidence - gap: every bin is
    overconfident by exactly `gap`, so the expected ECE is `gap` (0 for gap = 0)."""
    confidence = np.random.default_rng(seed + 1).uniform(gap, 1, n)
    return labelled(confidence, confidence - gap, seed)


def logit_overconfident(n: int, seed: int = 0) -> pd.DataFrame:
    """Mostly high confidence, P(correct) = sigmoid(0.5 logit(c) - 0.6): the shape of an
    overconfident softmax (a temperature), with an ECE near raw Whisper base's 0.25."""
    confidence = np.random.default_rng(seed + 1).beta(4, 1, n)
    return labelled(confidence, expit(0.5 * logit(confidence) - 0.6), seed)


def test_ece_exact_on_a_constructed_table():
    # 100 files at 0.95 with 60 right, 50 at 0.55 with 40 right: ECE = (100*0.35 + 50*0.25) / 150
    confidence = np.r_[np.full(100, 0.95), np.full(50, 0.55)]
    correct = np.r_[np.arange(100) < 60, np.arange(50) < 40]
    assert expected_calibration_error(confidence, correct) == pytest.approx(47.5 / 150)
    frame = pd.DataFrame({"uri": range(150), "model": "m", "label": "en", "confidence": confidence,
                          "predicted": np.where(correct, "en", "de")})
    assert float(evaluate(frame)["ece"].item()) == pytest.approx(47.5 / 150)


@pytest.mark.parametrize("gap", [0.0, 0.25])
def test_ece_matches_the_analytic_value(gap):
    frame = constant_gap(60_000, gap)
    correct = frame["predicted"] == frame["label"]
    assert expected_calibration_error(frame["confidence"], correct) == pytest.approx(gap, abs=0.01)


def test_platt_scaling_reduces_ece_on_held_out_files():
    frame = dd.from_pandas(logit_overconfident(40_000), npartitions=4)
    fit_part, held_out = calibration.split_by_uri(frame)
    calibrations = calibration.fit_per_model(fit_part)
    assert calibrations["m"].a == pytest.approx(0.5, abs=0.05)  # overconfident: the logit is shrunk
    effect = calibration.calibration_effect(held_out, calibrations)
    raw, calibrated = effect["calibration_ece"].sel(model="m").values
    assert raw > 0.2 and calibrated < 0.02
    assert int(effect["calibration_count"].sel(model="m", stage="raw").sum()) == len(held_out)


def test_platt_scaling_helps_when_its_shape_is_wrong():
    """A constant gap is not logit-linear: Platt cannot remove all of it, but most."""
    fit_part, held_out = calibration.split_by_uri(constant_gap(40_000, 0.25))
    effect = calibration.calibration_effect(held_out, calibration.fit_per_model(fit_part))
    raw, calibrated = effect["calibration_ece"].sel(model="m").values
    assert raw == pytest.approx(0.25, abs=0.02) and calibrated < raw / 3


def test_temperature_scaling_recovers_the_temperature():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1.5, (30_000, 8))
    true = (rng.random((30_000, 1)) > softmax(logits, axis=1).cumsum(axis=1)).sum(axis=1)  # sampled from softmax
    outputs = softmax(3 * logits, axis=1)  # a model three times too sure of itself
    fitted = calibration.fit_temperature(outputs[:20_000], true[:20_000])
    assert fitted.temperature == pytest.approx(3, rel=0.1)
    held_out, truth = outputs[20_000:], true[20_000:]
    calibrated = fitted.apply(held_out)
    np.testing.assert_array_equal(calibrated.argmax(axis=1), held_out.argmax(axis=1))  # answers unchanged
    correct = held_out.argmax(axis=1) == truth
    before = expected_calibration_error(held_out.max(axis=1), correct)
    after = expected_calibration_error(calibrated.max(axis=1), correct)
    assert before > 0.2 and after < 0.03


def test_fit_without_true_class_and_degenerate_data():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert calibration.fit_temperature(probabilities, np.array([0, -1, 1])).n == 2
    always_right = calibration.fit_platt(np.full(50, 0.7), np.ones(50))
    assert np.isfinite([always_right.a, always_right.b]).all() and always_right.apply([0.7])[0] > 0.9
    coin = calibration.fit_platt(np.full(1000, 0.9999), np.arange(1000) % 2 == 0)
    assert coin.apply([0.9999])[0] == pytest.approx(0.5, abs=0.02)


def test_parameters_are_serialisable():
    for fitted in (calibration.PlattScaling(0.5, -0.2, 10), calibration.TemperatureScaling(2.0, 10)):
        assert calibration.from_dict(fitted.to_dict()) == fitted


def test_split_by_uri_is_deterministic_and_stable():
    frame = constant_gap(5000, 0.1)
    fit_part, held_out = calibration.split_by_uri(frame, test_fraction=0.3)
    assert len(held_out) / len(frame) == pytest.approx(0.3, abs=0.03)
    assert not set(fit_part["uri"]) & set(held_out["uri"])
    # same split on a Dask frame, and for a file whatever else is in the frame
    _, dask_held_out = calibration.split_by_uri(dd.from_pandas(frame, npartitions=3), test_fraction=0.3)
    assert set(dask_held_out["uri"].compute()) == set(held_out["uri"])
    _, subset_held_out = calibration.split_by_uri(frame.iloc[::7], test_fraction=0.3)
    assert set(subset_held_out["uri"]) == set(held_out["uri"]) & set(frame.iloc[::7]["uri"])


def test_apply_leaves_models_without_calibration_alone():
    frame = pd.DataFrame({"uri": ["a", "b"], "model": ["m", "n"], "confidence": [0.9, 0.9]})
    out = calibration.apply_calibrations(frame, {"m": calibration.PlattScaling(1.0, -1.0, 1)}).compute()
    assert out["calibrated"].iloc[0] < 0.9 and out["calibrated"].iloc[1] == 0.9


def test_undo_gives_back_the_models_own_confidence():
    """A run whose answers went through a stored calibration is recalibrated on the model's own
    confidence: undoing the Platt scaling must give it back."""
    frame = logit_overconfident(2000)
    fitted = {"m": calibration.PlattScaling(0.5, -0.6, 100)}
    calibrated = calibration.apply_calibrations(frame, fitted, column="confidence").compute()
    assert not np.allclose(calibrated["confidence"], frame["confidence"])
    undone = calibration.undo_calibrations(calibrated, fitted).compute()
    np.testing.assert_allclose(undone["confidence"], frame["confidence"], atol=1e-5)
    with pytest.raises(ValueError, match="temperature scaling"):
        calibration.undo_calibrations(calibrated, {"m": calibration.TemperatureScaling(2.0, 100)})
