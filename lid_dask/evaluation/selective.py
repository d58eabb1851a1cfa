"""Selective prediction: which answers to accept without a listen, with a guarantee on their precision.

The contract a person running an archive needs is "the files you did not send me are at least
`target` right". `fit_accept_rule` chooses the lowest confidence threshold for which labelled
data support that promise, by Learn then Test (Angelopoulos, Bates, Candès, Jordan and Lei,
2021) with fixed-sequence testing:

- Candidate thresholds are a fixed grid from 1 down to 0 (`GRID`), chosen before any label is
  seen. For each, the null hypothesis is "the precision of the files accepted at this threshold
  is below `target`", i.e. their error rate is at least ``epsilon = 1 - target``.
- Its p-value is the exact binomial tail ``P(Binomial(n_t, epsilon) <= k_t)`` for the `n_t`
  accepted files and their `k_t` errors (conditional on `n_t`, accepted files are an i.i.d.
  sample of the accepted population, so the test is exact).
- The thresholds are tested in order, from the highest with enough accepted files to ever
  reject (with no error at all: ``(1 - epsilon)^n <= delta``; that count uses no label), and
  testing stops at the first null not rejected at level ``delta = 1 - confidence_level``. The
  lowest rejected threshold is the rule; none rejected: accept nothing.

Fixed-sequence testing controls the family-wise error at `delta`, so with probability at least
`confidence_level` over the labelled sample, the population precision of the accepted files is
at least `target`. Assumptions: the labelled files are exchangeable with the files the rule is
applied to (same models and weights, same kind of audio); the guarantee is on the population of
accepted files, not on every batch. Files another review reason sends to a person (models or
windows disagreeing, no speech) are never accepted, and the rule is fitted on the rest
(`eligible`), so the promise covers exactly what is accepted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

GRID = np.round(np.arange(1000, -1, -5) / 1000, 3)  # 1.000, 0.995, ..., 0.000


@dataclass(frozen=True)
class AcceptRule:
    """Accept an answer (no review) when it is eligible and its confidence is at least `threshold`."""

    threshold: float | None  # None: nothing can be promised at this target; every answer goes to review
    target: float
    confidence_level: float
    n: int  # labelled (eligible) files the rule was chosen on
    accepted: int  # of those, how many the rule accepts
    errors: int  # and how many of those were wrong
    precision_lower: float | None  # one-sided Clopper-Pearson bound of the accepted precision, at the level

    def accepts(self, confidence: np.ndarray | float) -> np.ndarray | bool:
        if self.threshold is None:
            return np.zeros_like(confidence, dtype=bool) if np.ndim(confidence) else False
        return np.asarray(confidence) >= self.threshold if np.ndim(confidence) else confidence >= self.threshold

    def to_dict(self) -> dict:
        return {"method": "learn-then-test", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> AcceptRule:
        return cls(**{k: v for k, v in data.items() if k != "method"})


def minimum_files(target: float, confidence_level: float) -> int:
    """Accepted files without a single error it takes to promise `target` at `confidence_level`."""
    return math.ceil(math.log(1 - confidence_level) / math.log(target))


def fit_accept_rule(confidence, correct, target: float = 0.97, confidence_level: float = 0.95,
                    eligible=None) -> AcceptRule:
    """The lowest threshold of `GRID` whose accepted precision is at least `target` with
    probability `confidence_level` (see the module docstring)."""
    if not 0 < target < 1 or not 0 < confidence_level < 1:
        raise ValueError("target and confidence_level must lie strictly between 0 and 1")
    confidence, correct, eligible = _arrays(confidence, correct, eligible)
    confidence, correct = confidence[eligible], correct[eligible]
    epsilon, delta = 1 - target, 1 - confidence_level
    needed = minimum_files(target, confidence_level)
    chosen = None
    for threshold in GRID:
        accepted = confidence >= threshold
        n = int(accepted.sum())
        if n < needed:
            continue  # never rejectable: skipping it uses no label, so the sequence stays fixed
        errors = int((~correct[accepted]).sum())
        if stats.binom.cdf(errors, n, epsilon) > delta:
            break
        chosen = (float(threshold), n, errors)
    if chosen is None:
        return AcceptRule(None, target, confidence_level, int(len(confidence)), 0, 0, None)
    threshold, n, errors = chosen
    return AcceptRule(threshold, target, confidence_level, int(len(confidence)), n, errors,
                      precision_bounds(n - errors, n, confidence_level, one_sided=True)[0])


def precision_bounds(right: int, accepted: int, level: float = 0.95, one_sided: bool = False) -> tuple[float, float]:
    """Clopper-Pearson interval of a precision of `right` out of `accepted` (nan when none)."""
    if accepted == 0:
        return math.nan, math.nan
    tail = 1 - level if one_sided else (1 - level) / 2
    lower = 0.0 if right == 0 else float(stats.beta.ppf(tail, right, accepted - right + 1))
    upper = 1.0 if right == accepted else float(stats.beta.ppf(1 - tail, right + 1, accepted - right))
    return lower, upper


def rule_performance(rule: AcceptRule, confidence, correct, eligible=None, level: float = 0.95) -> dict:
    """How `rule` does on labelled files: precision of the accepted ones (with its two-sided
    Clopper-Pearson interval), coverage, the review queue's size and the share of errors it holds."""
    confidence, correct, eligible = _arrays(confidence, correct, eligible)
    accepted = eligible & rule.accepts(confidence)
    return performance(len(correct), int(accepted.sum()), int(correct[accepted].sum()), int((~correct).sum()), level)


def performance(files: int, accepted: int, right: int, wrong: int, level: float = 0.95) -> dict:
    """The figures of `rule_performance` from counts: `files` labelled, `accepted` of them of which
    `right` were right, and `wrong` files in all (accepted or not)."""
    lower, upper = precision_bounds(right, accepted, level)
    return {"files": int(files), "accepted": int(accepted), "coverage": accepted / files if files else math.nan,
            "precision": right / accepted if accepted else math.nan, "precision_low": lower,
            "precision_high": upper, "review_queue": int(files - accepted),
            "errors_caught": (wrong - (accepted - right)) / wrong if wrong else math.nan}


def risk_coverage(confidence, correct, eligible=None) -> dict[str, np.ndarray]:
    """Precision and coverage of the accepted files at each threshold of `GRID` (for the plot)."""
    confidence, correct, eligible = _arrays(confidence, correct, eligible)
    accepted = eligible[None, :] & (confidence[None, :] >= GRID[:, None])
    counts = accepted.sum(axis=1)
    right = (accepted & correct[None, :]).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(counts > 0, right / counts, np.nan)
    return {"threshold": GRID, "coverage": counts / max(1, len(correct)), "precision": precision,
            "accepted": counts}


def _arrays(confidence, correct, eligible):
    confidence = np.nan_to_num(np.asarray(confidence, dtype=np.float64), nan=-1.0)
    correct = np.asarray(correct, dtype=bool)
    eligible = np.ones(len(correct), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    if not len(confidence) == len(correct) == len(eligible):
        raise ValueError("confidence, correct and eligible must have one entry per file")
    return confidence, correct, eligible
