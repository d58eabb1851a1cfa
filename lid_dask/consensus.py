"""From window probabilities to one trustworthy answer per file.

The rule, in two steps (all weights and thresholds live in `ConsensusConfig`):

1. Per model, windows vote with weight = seconds of speech they contain; windows with less than
   `min_window_speech` seconds do not vote. The model's file distribution is the weighted mean of
   its voting windows. If a voting window's top language differs from the file's and that window
   is itself confident (>= `window_disagreement`), the file is flagged ``windows_disagree``
   (code-switching, dubbed or mixed content).
2. Across models, the final distribution is the weighted mean of the models' distributions
   (`model_weights`, default 1 each); the final language is its arg-max and the confidence its
   probability. Agreement counts the models whose own top language equals the final one: all
   (``unanimous``), more than half (``majority``) or not (``split``); ``single`` with one model.

A file needs review when models are split (or only a majority agrees, if `review_majority`),
confidence is below `low_confidence`, windows disagree, or there is no usable speech.

Early stop (long files under the ``auto`` plan only): a model runs first on the two windows with
the most speech. If both name the same language with probability >= `early_stop`, and the windows
not yet run could change neither the file's language nor its low-confidence flag even if they all
named another language with certainty (`settled`), those windows are not run: their records keep
their speech seconds but no language (probability 0). ``windows_disagree`` then speaks for the
windows that ran; a skipped window could still have disagreed (measured on dev: under 1% of such
stops, see benchmarks/README.md). ``early_stop=None`` runs every window.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from lid_dask.results import TOP_K, ModelVerdict, WindowVerdict
from lid_dask.vocabulary import Agreement, ReviewReason
from lid_dask.windows import Window


@dataclass(frozen=True)
class ConsensusConfig:
    """Weights and thresholds of the consensus rule (see the module docstring).

    The defaults are round, conventional values fixed before looking at results (a probability
    of one half; half a second of speech), not tuned on any test set, except `early_stop`: the
    smallest of 0.8-0.99 at which, on the dev split's Festival voices, at most 1% of early stops
    skipped a window that would have flagged ``windows_disagree`` (0.9%; holdout in
    benchmarks/README.md). Above 0.75 it also guarantees that the third of three windows could not
    have changed the language.
    """

    model_weights: dict[str, float] = field(default_factory=dict)
    low_confidence: float = 0.5
    window_disagreement: float = 0.5
    min_window_speech: float = 0.5
    review_majority: bool = True
    early_stop: float | None = 0.8


@dataclass
class ModelOutput:
    """A model's file-level distribution plus the record that goes into the result."""

    verdict: ModelVerdict
    distribution: dict[str, float]


def settled(probabilities: np.ndarray, speech: list[float], unseen_speech: float, config: ConsensusConfig) -> bool:
    """Whether the windows run so far (rows of `probabilities`, with their `speech` seconds) fix
    the file's answer: they agree with probability >= `early_stop`, and windows holding
    `unseen_speech` more seconds could not change the language or the low-confidence flag."""
    if config.early_stop is None or len(probabilities) < 2:
        return False
    top = probabilities.argmax(axis=1)
    p = probabilities.max(axis=1)
    if (top != top[0]).any() or p.min() < config.early_stop:
        return False
    weights = np.asarray(speech, dtype=float)
    # Worst case: every unseen window is certain of one other language.
    keeps_language = float((weights * (2 * p - 1)).sum()) > unseen_speech
    keeps_confidence = float((weights * p).sum()) >= config.low_confidence * (weights.sum() + unseen_speech)
    return keeps_language and keeps_confidence


def combine_windows(model: str, labels: list[str], probabilities: np.ndarray, speech: list[float],
                    windows: list[Window], config: ConsensusConfig, skipped: frozenset[int] = frozenset()
                    ) -> ModelOutput | None:
    """One model's file verdict from its window probabilities; None when no window has speech.
    Windows in `skipped` were not run (the file was `settled` without them) and do not vote."""
    weights = np.array([s if s >= config.min_window_speech and i not in skipped else 0.0
                        for i, s in enumerate(speech)])
    window_records = tuple(
        WindowVerdict(w.start, w.duration, s, labels[int(p.argmax())] if p.any() else None, float(p.max(initial=0)))
        for w, s, p in zip(windows, speech, probabilities)
    )
    if weights.sum() <= 0:
        return None
    distribution = (weights[:, None] * probabilities).sum(axis=0) / weights.sum()
    best = int(distribution.argmax())
    disagree = any(
        wv.language != labels[best] and wv.probability >= config.window_disagreement
        for wv, weight in zip(window_records, weights) if weight > 0
    )
    as_dict = _to_dict(labels, distribution)
    verdict = ModelVerdict(model=model, language=labels[best], probability=float(distribution[best]),
                           top=_top(as_dict), windows_disagree=disagree, windows=window_records)
    return ModelOutput(verdict, as_dict)


def calibrate(output: ModelOutput, calibration) -> ModelOutput:
    """Apply a fitted calibration (`lid_dask.calibration`) to a model's file verdict.

    Temperature scaling reshapes the whole distribution; Platt scaling maps the top probability
    and rescales the other languages to share the rest, so consensus averages calibrated
    distributions either way.
    """
    labels = list(output.distribution)
    values = np.array([output.distribution[label] for label in labels])
    top = int(values.argmax())
    if hasattr(calibration, "temperature"):
        values = calibration.apply(values[None, :])[0]
    else:
        new_top = float(calibration.apply(values[top]))
        rest = values.sum() - values[top]
        values = values * ((1 - new_top) / rest if rest > 0 else 0.0)
        values[top] = new_top
    distribution = dict(zip(labels, (float(v) for v in values)))
    best = labels[int(values.argmax())]
    verdict = dataclasses.replace(output.verdict, language=best, probability=distribution[best],
                                  top=_top(distribution))
    return ModelOutput(verdict, distribution)


@dataclass(frozen=True)
class Consensus:
    language: str | None
    confidence: float
    agreement: Agreement
    reasons: tuple[ReviewReason, ...]


def combine_models(outputs: list[ModelOutput], config: ConsensusConfig) -> Consensus:
    """The final answer from the models' distributions (see the module docstring)."""
    if not outputs:
        return Consensus(None, 0.0, Agreement.NONE, (ReviewReason.NO_SPEECH,))
    total: dict[str, float] = {}
    weight_sum = 0.0
    for out in outputs:
        weight = config.model_weights.get(out.verdict.model, 1.0)
        weight_sum += weight
        for language, p in out.distribution.items():
            total[language] = total.get(language, 0.0) + weight * p
    language = max(total, key=total.get)
    confidence = total[language] / weight_sum if weight_sum > 0 else 0.0
    votes = sum(out.verdict.language == language for out in outputs)
    if len(outputs) == 1:
        agreement = Agreement.SINGLE
    elif votes == len(outputs):
        agreement = Agreement.UNANIMOUS
    elif votes * 2 > len(outputs):
        agreement = Agreement.MAJORITY
    else:
        agreement = Agreement.SPLIT
    reasons = []
    if agreement == Agreement.SPLIT or (agreement == Agreement.MAJORITY and config.review_majority):
        reasons.append(ReviewReason.MODELS_DISAGREE)
    if confidence < config.low_confidence:
        reasons.append(ReviewReason.LOW_CONFIDENCE)
    if any(out.verdict.windows_disagree for out in outputs):
        reasons.append(ReviewReason.WINDOWS_DISAGREE)
    return Consensus(language, float(confidence), agreement, tuple(reasons))


def _to_dict(labels: list[str], distribution: np.ndarray) -> dict[str, float]:
    """Label -> probability; labels that map to the same language add up."""
    out: dict[str, float] = {}
    for label, p in zip(labels, distribution):
        if p > 0:
            out[label] = out.get(label, 0.0) + float(p)
    return out


def _top(distribution: dict[str, float]) -> dict[str, float]:
    ranked = sorted(distribution.items(), key=lambda kv: -kv[1])[:TOP_K]
    return {language: round(p, 4) for language, p in ranked}
