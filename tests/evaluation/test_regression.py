"""Regression detection on constructed before/after results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from lid_dask.evaluation.metrics import evaluate
from lid_dask.evaluation.regression import ALL, MACRO, compare, mcnemar_p, paired_counts

LANGUAGES = [f"l{i:02d}" for i in range(20)]
FILES = 300  # per language


def results(accuracy: dict[str, float], seed: int) -> pd.DataFrame:
    """One model's answers: right with the language's accuracy (0.85 unless given), independently per file."""
    rng = np.random.default_rng(seed)
    label = np.repeat(LANGUAGES, FILES)
    right = rng.random(len(label)) < np.array([accuracy.get(lang, 0.85) for lang in label])
    return pd.DataFrame({"uri": [f"f{i}" for i in range(len(label))], "model": "m", "label": label,
                         "predicted": np.where(right, label, "zz"), "confidence": 0.9})


@pytest.fixture(scope="module")
def before():
    frame = results({}, seed=1)
    return frame, evaluate(frame)


def test_a_real_drop_is_flagged(before):
    frame_before, ds_before = before
    frame_after = results({"l03": 0.65}, seed=2)
    comparison = compare(evaluate(frame_after), ds_before)
    assert list(comparison.regressions["language"]) == ["l03"]
    row = comparison.regressions.iloc[0]
    assert row["test"] == "fisher" and row["ci_high"] < 0 and row["delta"] < -0.1
    assert comparison.exit_code() == 1 and "l03" in comparison.summary()
    assert set(comparison.table["language"]) == {*LANGUAGES, ALL, MACRO}

    paired = compare(evaluate(frame_after), ds_before, paired_counts(frame_after, frame_before))
    assert list(paired.regressions["language"]) == ["l03"]
    assert set(paired.table["test"]) == {"mcnemar", "bootstrap"}  # bootstrap: the macro row


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_noise_is_not_flagged(before, seed):
    frame_before, ds_before = before
    frame_after = results({}, seed=seed)  # same accuracy, other draws
    for paired in (None, paired_counts(frame_after, frame_before)):
        comparison = compare(evaluate(frame_after), ds_before, paired)
        assert comparison.exit_code() == 0, comparison.summary()


def test_small_drops_below_the_threshold_are_not_flagged(before):
    frame_before, ds_before = before
    everywhere = results({lang: 0.84 for lang in LANGUAGES}, seed=5)
    comparison = compare(evaluate(everywhere), ds_before, threshold=0.05)
    assert comparison.exit_code() == 0


def test_paired_counts_match_pandas(before):
    frame_before, _ = before
    frame_after = results({"l00": 0.5}, seed=6)
    counts = paired_counts(frame_after, frame_before)
    merged = frame_after.merge(frame_before, on=["uri", "model"], suffixes=("", "_b"))
    ok, ok_b = merged["predicted"] == merged["label"], merged["predicted_b"] == merged["label"]
    expected = merged.assign(b=ok_b & ~ok, c=~ok_b & ok).groupby("label")[["b", "c"]].sum()
    np.testing.assert_array_equal(counts.loc["m"][["b", "c"]].to_numpy(), expected.to_numpy())
    assert (counts["n"] == FILES).all()


def test_mcnemar_p_is_the_exact_binomial_test():
    for b, c in [(0, 0), (3, 9), (40, 20), (500, 560)]:
        expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
        assert mcnemar_p(b, c) == pytest.approx(expected)
