"""Metrics against independent references (scikit-learn, plain pandas)."""

from __future__ import annotations

import io
import json
import warnings

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support)

from lid_dask.evaluation.metrics import (NONE, evaluate, expected_calibration_error, per_language_table,
                                         summary_table, top_confusions)
from lid_dask.evaluation.serialize import from_json, to_json

TRUE = ["en", "de", "fr"]
SAID = ["en", "de", "fr", "it", None]  # it: only ever predicted; None: no answer

rows = st.lists(st.tuples(st.sampled_from(["a", "consensus"]), st.sampled_from(TRUE), st.sampled_from(SAID),
                          st.floats(0, 1)), min_size=1, max_size=60)


def as_frame(data) -> pd.DataFrame:
    return pd.DataFrame([{"uri": f"u{i}", "model": m, "label": t, "predicted": p, "confidence": c}
                         for i, (m, t, p, c) in enumerate(data)])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows, st.integers(1, 4))
def test_metrics_equal_scikit_learn(data, npartitions):
    frame = as_frame(data)
    ds = evaluate(dd.from_pandas(frame, npartitions=npartitions))  # sums over partitions must combine
    for model, part in frame.groupby("model"):
        y_true = part["label"].to_numpy()
        y_pred = part["predicted"].fillna(NONE).to_numpy()
        union = sorted(set(y_true) | set(part["predicted"].dropna()))  # what this model saw or said
        at = ds.sel(model=model)
        assert int(at["n"]) == len(part)
        assert float(at["accuracy"]) == pytest.approx(accuracy_score(y_true, y_pred))
        assert float(at["macro_f1"]) == pytest.approx(f1_score(y_true, y_pred, labels=union, average="macro",
                                                               zero_division=0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
            assert float(at["macro_accuracy"]) == pytest.approx(balanced_accuracy_score(y_true, y_pred))
        assert float(at["coverage"]) == pytest.approx(part["predicted"].notna().mean())

        precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=union,
                                                                         zero_division=np.nan)
        table = at["per_language"].sel(language=union).to_pandas()
        np.testing.assert_allclose(table["precision"], precision, equal_nan=True)
        np.testing.assert_allclose(table["recall"], recall, equal_nan=True)
        np.testing.assert_allclose(table["f1"], f1, equal_nan=True)
        np.testing.assert_array_equal(table["support"], support)

        languages = [str(lang) for lang in ds["language"].values]  # union over all models
        expected = confusion_matrix(y_true, y_pred, labels=[*languages, NONE])[:len(languages)]
        np.testing.assert_array_equal(at["confusion"].values, expected)

        answered = part[part["predicted"].notna()]
        correct = answered["predicted"] == answered["label"]
        assert float(at["ece"]) == pytest.approx(expected_calibration_error(answered["confidence"], correct),
                                                 nan_ok=True)
        wrong_confident = ((answered["confidence"] >= 0.8) & ~correct).sum()
        assert float(at["confidently_wrong"]) == pytest.approx(wrong_confident / len(part))
        for threshold in (0.0, 0.5, 0.8):
            kept = answered["confidence"] >= threshold
            curve = at.sel(threshold=threshold)
            assert float(curve["selective_coverage"]) == pytest.approx(kept.sum() / len(part))
            if kept.any():
                assert float(curve["selective_accuracy"]) == pytest.approx(correct[kept].mean())
    # a language nobody predicted and nobody spoke is not in the Dataset
    assert set(ds["language"].values) == set(frame["label"]) | set(frame["predicted"].dropna())


def test_reliability_and_ece_from_bins(frame, dataset):
    part = frame[(frame["model"] == "a") & frame["predicted"].notna()]
    correct = (part["predicted"] == part["label"]).to_numpy()
    bins = np.minimum((part["confidence"].to_numpy() * 15).astype(int), 14)
    at = dataset.sel(model="a")
    np.testing.assert_array_equal(at["reliability_count"], np.bincount(bins, minlength=15))
    np.testing.assert_allclose(at["reliability_accuracy"], pd.Series(correct).groupby(bins).mean().reindex(range(15)))
    gap = np.abs(at["reliability_accuracy"] - at["reliability_confidence"]) * at["reliability_count"]
    assert float(at["ece"]) == pytest.approx(float(gap.sum() / at["reliability_count"].sum()))


def test_long_tail_groups_are_named_by_their_number_of_files(frame, dataset):
    support = frame[frame["model"] == "a"]["label"].value_counts()
    groups = dataset["language_group"].to_series()
    assert groups["xx"] == "no labelled files"  # only ever answered
    ranked = support.sort_values(kind="stable")  # 6 languages with distinct supports: 2 a group
    s = [int(n) for n in ranked]
    names = [f"{s[0]}-{s[1]} files", f"{s[2]}-{s[3]} files", f"≥{s[4]} files"]
    assert [groups[lang] for lang in ranked.index] == [names[0]] * 2 + [names[1]] * 2 + [names[2]] * 2
    assert list(dataset["group"].values) == names[::-1]  # most files first
    part = frame[(frame["model"] == "a") & frame["label"].isin(ranked.index[:2])]
    expected = (part["predicted"] == part["label"]).mean()
    assert float(dataset["group_accuracy"].sel(model="a", group=names[0])) == pytest.approx(expected)

    levels = evaluate(frame, resource_levels={"English": "high", "de": "high", "fi": "low"})
    assert list(levels["group"].values) == ["high", "low", "unknown"]
    assert int(levels["group_support"].sel(model="a", group="low")) == support["fi"]


def test_languages_with_as_many_files_share_a_long_tail_group():
    """Ranks would split languages of equal support between groups, so two groups could both
    mean "3 files"; grouped by support, they stay together and each name says what it holds."""
    counts = {"en": 40, "de": 3, "fr": 3, "it": 3, "cs": 3, "fi": 1}
    labels = [lang for lang, n in counts.items() for _ in range(n)]
    frame = pd.DataFrame({"uri": range(len(labels)), "model": "m", "label": labels, "predicted": labels,
                          "confidence": 0.9})
    groups = evaluate(frame)["language_group"].to_series().to_dict()
    assert groups == {"en": "≥40 files", "de": "3 files", "fr": "3 files", "it": "3 files", "cs": "3 files",
                      "fi": "1 file"}


@pytest.mark.parametrize(("files", "bins"), [(24, 5), (200, 6), (300, 10), (360, 12), (3000, 15)])
def test_reliability_bins_follow_the_number_of_files(files, bins):
    rng = np.random.default_rng(files)
    frame = pd.DataFrame({"uri": range(files), "model": "m", "label": "en",
                          "predicted": rng.choice(["en", "de"], files), "confidence": rng.random(files)})
    ds = evaluate(frame)
    assert ds.sizes["bin"] == bins == ds.attrs["bins"]
    assert int(ds["reliability_count"].sum()) == files
    # ECE keeps its 15 bins whatever the curve's
    correct = frame["predicted"] == frame["label"]
    assert float(ds["ece"].item()) == pytest.approx(expected_calibration_error(frame["confidence"], correct, 15))
    with pytest.raises(ValueError, match="bins"):
        evaluate(frame, bins=7)


def test_consensus_value(frame, dataset):
    part = frame[frame["model"] == "consensus"]
    correct = part["predicted"] == part["label"]
    review = part["needs_review"]
    at = dataset.sel(model="consensus")
    assert float(at["review_share"]) == pytest.approx(review.mean())
    assert float(at["review_error_capture"]) == pytest.approx((review & ~correct).sum() / (~correct).sum())
    assert float(at["review_error_rate"]) == pytest.approx((review & ~correct).sum() / review.sum())
    split = part["agreement"] == "split"
    assert float(at["agreement_accuracy"].sel(agreement="split")) == pytest.approx(correct[split].mean())
    assert int(at["agreement_count"].sel(agreement="unanimous")) == (part["agreement"] == "unanimous").sum()
    # as a database may give the flag back: text or 0/1
    for spelled in (frame["needs_review"].astype(str), frame["needs_review"].astype(int)):
        again = evaluate(frame.assign(needs_review=spelled))
        assert float(again["review_share"].sel(model="consensus")) == pytest.approx(review.mean())


def test_no_labelled_row_is_an_error_not_an_empty_result(frame):
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate(frame.assign(label=None))


def test_tables(dataset):
    summary = summary_table(dataset)
    assert {"accuracy", "macro_f1", "ece", "coverage"} <= set(summary.columns)
    table = per_language_table(dataset, "consensus")
    assert table["support"].is_monotonic_decreasing and "xx" in table.index  # predicted-only stays visible
    top = top_confusions(dataset, "consensus", n=5)
    assert len(top) == 5 and (top["true"] != top["predicted"]).all() and top["count"].is_monotonic_decreasing


def test_json_and_netcdf_round_trip(dataset):
    text = to_json(dataset)
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert from_json(text).equals(dataset)
    assert xr.open_dataset(io.BytesIO(bytes(dataset.to_netcdf(engine="scipy"))), engine="scipy").load().equals(dataset)
