"""Selective prediction: the precision promise holds by simulation, and the rule behaves at the edges."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lid_dask.evaluation.selective import (AcceptRule, fit_accept_rule, minimum_files, precision_bounds,
                                           risk_coverage, rule_performance)


def draw(rng, n, a, b, slope, floor):
    """Scores from Beta(a, b); an answer is right with a probability rising with its score from
    `floor` (any shape of calibration, good or bad)."""
    confidence = rng.beta(a, b, n)
    p_right = floor + (1 - floor) * confidence ** slope
    return confidence, rng.random(n) < p_right


def true_precision(threshold, a, b, slope, floor) -> float:
    """Precision of the files accepted at `threshold`, by numerical integration over the score."""
    x = np.linspace(threshold, 1, 20001)[1:-1] if threshold is not None else None
    if x is None or len(x) == 0:
        return math.nan
    density = x ** (a - 1) * (1 - x) ** (b - 1)
    right = floor + (1 - floor) * x ** slope
    return float(np.trapezoid(density * right, x) / np.trapezoid(density, x))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=st.floats(0.5, 6), b=st.floats(0.3, 3), slope=st.floats(0.2, 4), floor=st.floats(0.0, 0.9),
       n=st.sampled_from([150, 400, 1500]), target=st.sampled_from([0.9, 0.95, 0.97]), seed=st.integers(0, 2**16))
def test_achieved_precision_falls_below_target_no_more_often_than_promised(a, b, slope, floor, n, target, seed):
    """Over 300 labelled sets drawn from one distribution, the rule's true precision is below the
    target in at most 5% of them (plus the binomial slack of 300 draws: 5% + 3 sd = 8.8%)."""
    rng = np.random.default_rng(seed)
    draws, violations, chosen = 300, 0, 0
    for _ in range(draws):
        rule = fit_accept_rule(*draw(rng, n, a, b, slope, floor), target=target, confidence_level=0.95)
        if rule.threshold is None:
            continue
        chosen += 1
        violations += true_precision(rule.threshold, a, b, slope, floor) < target
    assert violations <= 0.05 * draws + 3 * math.sqrt(draws * 0.05 * 0.95), (violations, chosen)


def test_a_well_separated_set_gets_a_threshold_that_keeps_its_promise():
    rng = np.random.default_rng(3)
    confidence, correct = draw(rng, 3000, 4, 1, 3, 0.2)
    rule = fit_accept_rule(confidence, correct, target=0.95)
    assert rule.threshold is not None and 0 < rule.threshold < 1
    held_out = draw(rng, 20000, 4, 1, 3, 0.2)
    assert rule_performance(rule, *held_out)["precision"] >= 0.95
    assert rule.precision_lower >= 0.95 - 1e-9


def test_too_few_files_promise_nothing_and_send_everything_to_review():
    rule = fit_accept_rule(np.ones(minimum_files(0.97, 0.95) - 1), np.ones(minimum_files(0.97, 0.95) - 1, bool),
                           target=0.97)
    assert rule.threshold is None and not rule.accepts(0.999)
    assert rule_performance(rule, [0.99, 0.5], [True, False])["accepted"] == 0


def test_ineligible_files_are_never_accepted_and_not_counted_for_the_rule():
    confidence = np.full(400, 0.99)
    correct = np.ones(400, bool)
    correct[:40] = False
    eligible = np.ones(400, bool)
    eligible[:40] = False  # the wrong ones disagree between models: a person hears them anyway
    rule = fit_accept_rule(confidence, correct, target=0.97, eligible=eligible)
    assert rule.threshold is not None and rule.n == 360 and rule.errors == 0
    performance = rule_performance(rule, confidence, correct, eligible)
    assert performance["precision"] == 1.0 and performance["errors_caught"] == 1.0
    assert performance["review_queue"] == 40


def test_round_trip_and_curve():
    rule = fit_accept_rule(*draw(np.random.default_rng(0), 1000, 4, 1, 3, 0.2), target=0.9)
    assert AcceptRule.from_dict(rule.to_dict()) == rule
    curve = risk_coverage(*draw(np.random.default_rng(1), 500, 4, 1, 3, 0.2))
    assert curve["coverage"][0] <= curve["coverage"][-1] == 1.0
    assert np.all(np.diff(curve["coverage"]) >= 0)


def test_clopper_pearson_matches_known_values():
    low, high = precision_bounds(95, 100, 0.95)
    assert low == pytest.approx(0.8872, abs=1e-3) and high == pytest.approx(0.9836, abs=1e-3)
    assert all(math.isnan(bound) for bound in precision_bounds(0, 0))  # nothing accepted: no bound
