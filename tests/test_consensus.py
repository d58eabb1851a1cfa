"""The consensus rule: windows weighted by speech, models by weight, review reasons."""

from __future__ import annotations

import numpy as np
import pytest

from lid_dask.consensus import ConsensusConfig, combine_models, combine_windows, settled
from lid_dask.windows import Window

LABELS = ["en", "de", "fr"]
CFG = ConsensusConfig()


def model(name, rows, speech, config=CFG):
    windows = [Window(10.0 * i, 10.0) for i in range(len(rows))]
    return combine_windows(name, LABELS, np.array(rows, dtype=float), speech, windows, config)


def test_windows_are_weighted_by_speech():
    out = model("m", [[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]], speech=[9.0, 1.0])
    assert out.verdict.language == "en"
    assert out.verdict.probability == pytest.approx((0.9 * 9 + 0.2 * 1) / 10)


def test_silent_windows_do_not_vote():
    out = model("m", [[0.0, 1.0, 0.0], [0.7, 0.3, 0.0]], speech=[0.1, 5.0])
    assert out.verdict.language == "en" and out.verdict.probability == pytest.approx(0.7)


def test_no_speech_anywhere_gives_no_verdict():
    assert model("m", [[0.5, 0.5, 0.0]], speech=[0.0]) is None
    decision = combine_models([], CFG)
    assert decision.language is None and decision.reasons == ("no_speech",)


def test_confident_disagreeing_windows_flag_mixed_content():
    out = model("m", [[0.9, 0.1, 0.0], [0.9, 0.1, 0.0], [0.1, 0.9, 0.0]], speech=[5, 5, 5])
    assert out.verdict.language == "en" and out.verdict.windows_disagree
    calm = model("m", [[0.9, 0.1, 0.0], [0.45, 0.4, 0.15]], speech=[5, 5])
    assert not calm.verdict.windows_disagree


def test_single_model_agreement_and_thresholds():
    sure = combine_models([model("a", [[0.9, 0.1, 0.0]], [5])], CFG)
    assert (sure.language, sure.agreement, sure.reasons) == ("en", "single", ())
    unsure = combine_models([model("a", [[0.4, 0.35, 0.25]], [5])], CFG)
    assert unsure.reasons == ("low_confidence",)


def test_unanimous_majority_split():
    a = model("a", [[0.8, 0.2, 0.0]], [5])
    b = model("b", [[0.7, 0.3, 0.0]], [5])
    c = model("c", [[0.1, 0.9, 0.0]], [5])
    d = model("d", [[0.1, 0.1, 0.8]], [5])
    assert combine_models([a, b], CFG).agreement == "unanimous"
    majority = combine_models([a, b, c], CFG)
    assert majority.agreement == "majority" and "models_disagree" in majority.reasons
    relaxed = combine_models([a, b, c], ConsensusConfig(review_majority=False))
    assert "models_disagree" not in relaxed.reasons
    split = combine_models([a, c, d], CFG)
    assert split.agreement == "split" and "models_disagree" in split.reasons


def test_model_weights_move_the_answer():
    a = model("a", [[0.6, 0.4, 0.0]], [5])
    b = model("b", [[0.2, 0.8, 0.0]], [5])
    assert combine_models([a, b], CFG).language == "de"  # (0.6+0.2)/2 < (0.4+0.8)/2
    weighted = combine_models([a, b], ConsensusConfig(model_weights={"a": 4.0}))
    assert weighted.language == "en"
    assert weighted.confidence == pytest.approx((4 * 0.6 + 0.2) / 5)


def test_models_with_different_label_sets_vote_together():
    a = model("a", [[0.9, 0.1, 0.0]], [5])
    other = combine_windows("b", ["en", "es"], np.array([[0.7, 0.3]]), [5.0], [Window(0, 10)], CFG)
    decision = combine_models([a, other], CFG)
    assert decision.language == "en" and decision.agreement == "unanimous"
    assert decision.confidence == pytest.approx(0.8)


def test_calibration_reshapes_a_model_before_consensus():
    from lid_dask.calibration import PlattScaling, TemperatureScaling
    from lid_dask.consensus import calibrate

    out = model("a", [[0.9, 0.06, 0.04]], [5])
    platt = calibrate(out, PlattScaling(a=0.5, b=0.0, n=100))
    assert platt.verdict.language == "en"
    assert platt.verdict.probability == pytest.approx(1 / (1 + (0.1 / 0.9) ** 0.5))
    assert sum(platt.distribution.values()) == pytest.approx(1.0)
    assert platt.distribution["de"] / platt.distribution["fr"] == pytest.approx(0.06 / 0.04)
    softened = calibrate(out, TemperatureScaling(temperature=2.0, n=100))
    assert 0.5 < softened.verdict.probability < 0.9 and sum(softened.distribution.values()) == pytest.approx(1.0)


def test_two_confident_agreeing_windows_settle_a_third():
    agree = np.array([[0.9, 0.1, 0.0], [0.85, 0.1, 0.05]])
    assert settled(agree, [8.0, 7.0], unseen_speech=7.0, config=CFG)
    assert not settled(agree, [8.0, 7.0], unseen_speech=7.0, config=ConsensusConfig(early_stop=None))
    assert not settled(agree, [8.0, 7.0], unseen_speech=7.0, config=ConsensusConfig(early_stop=0.88))
    assert not settled(np.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0]]), [8.0, 7.0], unseen_speech=7.0, config=CFG)


def test_windows_that_could_still_be_outvoted_do_not_settle():
    agree = np.array([[0.9, 0.1, 0.0], [0.9, 0.1, 0.0]])
    # 2 x 8 s at 0.9 leave a margin of 12.8 s: more unseen speech than that could name another language
    assert settled(agree, [8.0, 8.0], unseen_speech=12.0, config=CFG)
    assert not settled(agree, [8.0, 8.0], unseen_speech=13.0, config=CFG)
    # the margin holds but the file's confidence could drop below low_confidence
    strict = ConsensusConfig(low_confidence=0.7)
    assert not settled(agree, [8.0, 8.0], unseen_speech=12.0, config=strict)


def test_skipped_windows_do_not_vote_and_say_so():
    windows = [Window(10.0 * i, 10.0) for i in range(3)]
    rows = np.array([[0.9, 0.1, 0.0], [0.0, 0.0, 0.0], [0.8, 0.2, 0.0]])
    out = combine_windows("m", LABELS, rows, [6.0, 9.0, 5.0], windows, CFG, skipped=frozenset({1}))
    assert out.verdict.probability == pytest.approx((0.9 * 6 + 0.8 * 5) / 11)
    skipped = out.verdict.windows[1]
    assert skipped.language is None and skipped.probability == 0 and skipped.speech_seconds == 9.0
