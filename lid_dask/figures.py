"""Model-behaviour figures of a run, kept small whatever the run's size, and drift against a baseline.

A batch's recorded answers become one `summary` (a few hundred bytes of counts); `RunFigures` adds
summaries up into bounded aggregates: totals, a per-minute timeline of the last day, the language
mix with at most `TOP_LANGUAGES` named languages (the first seen; later ones count as "other"),
fixed confidence bins, and per-worker rates for the workers seen in the last `WORKER_IDLE_SECONDS`.
Memory is the same for a hundred files or a hundred million.

Drift compares two distributions with the population stability index,
``PSI = sum((p - q) ln(p / q))``, the usual reading being below 0.1 stable, 0.1-0.25 a shift
worth watching, above 0.25 drift (`WATCH`, `DRIFT`). Each of the language mix, the confidence
histogram, the agreement rate and the no-speech rate of the last `WINDOW_FILES` files is compared
with the baseline: the run's first `BASELINE_FILES` files, or figures loaded from an earlier run.
Counts get half a file of smoothing per category (so a language absent on one side gives a large
but finite PSI). Two samples of the same mix do not read zero: their PSI is about
``(1/n1 + 1/n2) chi2(k - 1)`` for k categories (Yurdakul, 2018), 0.14 on average for twenty
languages, 500 files against 200. So a measure gets no score until that sampling noise, at its
99.9th percentile (`noise`), is below `WATCH`: then a "watch" or "drift" is a change, not the luck
of a small sample. With 20 languages that takes about the full 1,000 files on each side; with four,
about 200 recent files. Pure Python, numpy and scipy: it runs in the orchestrator (which sends each
recorded batch's `summary` to the scheduler's monitor, `lid_dask.monitor`), in that monitor, and
in `lid-dask status --watch` (figures from the ledger).
"""

from __future__ import annotations

import collections
import math
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from lid_dask.results import FileResult
from lid_dask.vocabulary import Agreement

MONITOR_KEY = ["lid-dask", "monitor"]  # scheduler metadata: set where lid_dask.monitor runs
TOP_LANGUAGES = 20
OTHER = "other"
CONFIDENCE_BINS = 20  # 0.05 wide
BASELINE_FILES = 1000
WINDOW_FILES = 1000
WATCH, DRIFT = 0.1, 0.25
NOISE_QUANTILE = 0.999
TIMELINE_MINUTES = 24 * 60
WORKER_IDLE_SECONDS = 15 * 60
MEASURES = ("language_mix", "confidence", "agreement", "no_speech")

# A file's outcome: identified (a language), no_speech or too_short (answered without one), failed.
IDENTIFIED, FAILED = "identified", "failed"
AGREEING = {Agreement.UNANIMOUS, Agreement.MAJORITY, Agreement.SINGLE}


def confidence_bin(confidence: float) -> int:
    """Bin i holds confidences in (i/20, (i+1)/20], as a Prometheus bucket ``le`` counts them."""
    return min(CONFIDENCE_BINS - 1, max(0, math.ceil(confidence * CONFIDENCE_BINS) - 1))


def summary(results: Iterable[FileResult | None], errors: Iterable[str] = (), *, remaining: int | None = None,
            workers: dict[str, list[str]] | None = None) -> dict:
    """Counts of one batch's recorded answers, small enough to send to the scheduler per batch.

    `results` are the recorded answers; `errors` the error kinds of recorded files without a
    result (lost, killed_worker); `remaining` the files the run still has to do; `workers` maps
    each worker that answered to how its environment differs from the run's (empty: the same).
    """
    files, languages, agreement, review, error_kinds = Counter(), Counter(), Counter(), Counter(), Counter(errors)
    models: dict[str, Counter] = collections.defaultdict(Counter)
    confidence = [0] * CONFIDENCE_BINS
    audio = speech = confidence_sum = 0.0
    needs_review = rechecked = 0
    for result in results:
        if result is None:
            continue
        if result.ok:
            files[IDENTIFIED] += 1
            languages[result.language] += 1
            agreement[result.agreement] += 1
            confidence[confidence_bin(result.confidence)] += 1
            confidence_sum += result.confidence
            for verdict in result.models:
                models[verdict.model][verdict.language or OTHER] += 1
        elif result.answered:
            files[result.error_kind] += 1
        else:
            error_kinds[result.error_kind] += 1
        audio += result.duration or 0.0
        speech += result.speech_seconds
        needs_review += result.needs_review
        review.update(result.review_reasons)
        rechecked += bool(result.extra.get("rechecked_windows"))
    files[FAILED] += sum(error_kinds.values())
    return {"time": time.time(), "files": dict(files), "languages": dict(languages), "agreement": dict(agreement),
            "confidence": confidence, "confidence_sum": confidence_sum, "models": {m: dict(c) for m, c in models.items()},
            "review": dict(review), "needs_review": needs_review, "errors": dict(error_kinds),
            "audio_seconds": audio, "speech_seconds": speech, "rechecked": rechecked,
            "remaining": remaining, "workers": workers or {}}


class Distribution:
    """What drift compares: the language mix, confidence bins, agreement and no-speech counts."""

    def __init__(self, languages=None, confidence=None, agreement=(0, 0), no_speech=(0, 0)):
        self.languages: Counter = Counter(languages or {})
        self.confidence = np.array(confidence if confidence is not None else [0] * CONFIDENCE_BINS, dtype=np.int64)
        self.agreement = np.array(agreement, dtype=np.int64)  # agreeing, not agreeing (identified files)
        self.no_speech = np.array(no_speech, dtype=np.int64)  # without speech, with speech (answered files)

    @property
    def files(self) -> int:
        return int(self.no_speech.sum())

    def add(self, batch: dict) -> None:
        self.languages.update(batch["languages"])
        self.confidence += np.asarray(batch["confidence"], dtype=np.int64)
        agreeing = sum(n for kind, n in batch["agreement"].items() if kind in AGREEING)
        self.agreement += (agreeing, sum(batch["agreement"].values()) - agreeing)
        silent = sum(n for kind, n in batch["files"].items() if kind not in (IDENTIFIED, FAILED))
        self.no_speech += (silent, batch["files"].get(IDENTIFIED, 0))

    def subtract(self, batch: dict) -> None:
        self.languages.subtract(batch["languages"])
        self.languages = +self.languages
        self.confidence -= np.asarray(batch["confidence"], dtype=np.int64)
        agreeing = sum(n for kind, n in batch["agreement"].items() if kind in AGREEING)
        self.agreement -= (agreeing, sum(batch["agreement"].values()) - agreeing)
        silent = sum(n for kind, n in batch["files"].items() if kind not in (IDENTIFIED, FAILED))
        self.no_speech -= (silent, batch["files"].get(IDENTIFIED, 0))

    @classmethod
    def of(cls, rows: Iterable[tuple]) -> Distribution:
        """From the ledger's (language, confidence, agreement, error_kind) rows of answered files."""
        distribution = cls()
        for language, confidence, agreement, error_kind in rows:
            if language is None:
                distribution.no_speech += (1, 0)
                continue
            distribution.languages[language] += 1
            distribution.confidence[confidence_bin(confidence or 0.0)] += 1
            distribution.agreement += (1, 0) if agreement in AGREEING else (0, 1)
            distribution.no_speech += (0, 1)
        return distribution

    def to_dict(self) -> dict:
        return {"languages": dict(self.languages), "confidence": self.confidence.tolist(),
                "agreement": self.agreement.tolist(), "no_speech": self.no_speech.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> Distribution:
        return cls(data["languages"], data["confidence"], data["agreement"], data["no_speech"])


def psi(expected: Iterable[float], actual: Iterable[float]) -> float:
    """Population stability index of two count vectors over the same categories (half a count of
    smoothing per category)."""
    p = np.asarray(list(expected), dtype=np.float64) + 0.5
    q = np.asarray(list(actual), dtype=np.float64) + 0.5
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def noise(expected, actual) -> float:
    """The PSI that two samples of one mix, of these sizes, exceed once in a thousand."""
    expected, actual = np.asarray(list(expected), dtype=np.float64), np.asarray(list(actual), dtype=np.float64)
    if expected.sum() == 0 or actual.sum() == 0:
        return math.inf
    categories = int(np.count_nonzero(expected + actual))
    if categories < 2:
        return 0.0  # one category on both sides: nothing can differ
    from scipy.stats import chi2

    return float(chi2.ppf(NOISE_QUANTILE, categories - 1) * (1 / expected.sum() + 1 / actual.sum()))


def _pairs(baseline: Distribution, recent: Distribution) -> dict[str, tuple]:
    languages = sorted(set(baseline.languages) | set(recent.languages))
    return {"language_mix": ([baseline.languages[k] for k in languages], [recent.languages[k] for k in languages]),
            "confidence": (baseline.confidence, recent.confidence),
            "agreement": (baseline.agreement, recent.agreement),
            "no_speech": (baseline.no_speech, recent.no_speech)}


def drift(baseline: Distribution, recent: Distribution) -> dict[str, float | None]:
    """PSI of each measure; None until its sampling noise is below `WATCH` (module docstring)."""
    return {measure: psi(expected, actual) if noise(expected, actual) < WATCH else None
            for measure, (expected, actual) in _pairs(baseline, recent).items()}


def state(score: float | None) -> str:
    if score is None or math.isnan(score):
        return "warming up"
    return "drift" if score > DRIFT else "watch" if score > WATCH else "stable"


class RunFigures:
    """One run's figures, added up from batch summaries; bounded memory (see the module docstring)."""

    def __init__(self, run: str, baseline: Distribution | None = None, baseline_source: str = "first files"):
        self.run = run
        self.started = self.updated = time.time()
        self.files: Counter = Counter()
        self.languages: Counter = Counter()  # at most TOP_LANGUAGES names plus OTHER
        self.models: dict[str, Counter] = {}
        self.agreement: Counter = Counter()
        self.review: Counter = Counter()
        self.errors: Counter = Counter()
        self.confidence = np.zeros(CONFIDENCE_BINS, dtype=np.int64)
        self.confidence_sum = 0.0
        self.audio_seconds = self.speech_seconds = 0.0
        self.needs_review = self.rechecked = 0
        self.remaining: int | None = None
        self.active = True  # an orchestrator session is processing the run (see `lid_dask_session`)
        self.timeline: deque[dict] = deque(maxlen=TIMELINE_MINUTES)
        self.workers: dict[str, dict] = {}
        self.baseline = baseline or Distribution()
        self.baseline_source = baseline_source if baseline else "first files"
        self._baseline_fixed = baseline is not None
        self.recent = Distribution()
        self._recent_batches: deque[dict] = deque()

    def add(self, batch: dict) -> None:
        batch = self._bounded(batch)
        self.updated = now = float(batch.get("time") or time.time())
        self.files.update(batch["files"])
        self.languages.update(batch["languages"])
        for model, counts in batch["models"].items():
            self.models.setdefault(model, Counter()).update(self._named(counts, self.models.get(model, Counter())))
        self.agreement.update(batch["agreement"])
        self.review.update(batch["review"])
        self.errors.update(batch["errors"])
        self.confidence += np.asarray(batch["confidence"], dtype=np.int64)
        self.confidence_sum += batch["confidence_sum"]
        self.audio_seconds += batch["audio_seconds"]
        self.speech_seconds += batch["speech_seconds"]
        self.needs_review += batch["needs_review"]
        self.rechecked += batch["rechecked"]
        if batch.get("remaining") is not None:
            self.remaining = batch["remaining"]
        self._add_to_timeline(now, batch)
        self._add_to_workers(now, batch)
        if not self._baseline_fixed and self.baseline.files < BASELINE_FILES:
            self.baseline.add(batch)
        else:
            self._baseline_fixed = True
            self.recent.add(batch)
            self._recent_batches.append(batch)
            while self._recent_batches and (self.recent.files - _answered(self._recent_batches[0]) >= WINDOW_FILES
                                            or len(self._recent_batches) > WINDOW_FILES):
                self.recent.subtract(self._recent_batches.popleft())

    def set_baseline(self, baseline: Distribution, source: str) -> None:
        """Compare with `baseline` (an earlier run's figures) instead of this run's first files."""
        self.baseline, self.baseline_source, self._baseline_fixed = baseline, source, True

    def drift(self) -> dict[str, float | None]:
        return drift(self.baseline, self.recent)

    def drifted_workers(self) -> list[str]:
        return sorted(name for name, worker in self.active_workers().items() if worker["drift"])

    def active_workers(self) -> dict[str, dict]:
        cutoff = time.time() - WORKER_IDLE_SECONDS
        for name in [n for n, w in self.workers.items() if w["last_seen"] < cutoff]:
            del self.workers[name]
        return self.workers

    @property
    def answered(self) -> int:
        return sum(n for kind, n in self.files.items() if kind != FAILED)

    def _bounded(self, batch: dict) -> dict:
        """The batch with its languages folded into the run's named ones plus OTHER."""
        return {**batch, "languages": self._named(batch["languages"], self.languages)}

    @staticmethod
    def _named(counts: dict, known: Counter) -> Counter:
        named, room = Counter(), TOP_LANGUAGES - len([k for k in known if k != OTHER])
        for language, n in counts.items():
            if language in known or (room > 0 and language != OTHER):
                if language not in known:
                    room -= 1
                named[language] += n
            else:
                named[OTHER] += n
        return named

    def _add_to_timeline(self, now: float, batch: dict) -> None:
        minute = int(now // 60) * 60
        if not self.timeline or self.timeline[-1]["minute"] != minute:
            self.timeline.append({"minute": minute, "files": 0, "identified": 0, "agreeing": 0, "needs_review": 0,
                                  "failed": 0, "rechecked": 0, "audio_seconds": 0.0})
        bucket = self.timeline[-1]
        bucket["files"] += sum(batch["files"].values())
        bucket["identified"] += batch["files"].get(IDENTIFIED, 0)
        bucket["agreeing"] += sum(n for kind, n in batch["agreement"].items() if kind in AGREEING)
        bucket["needs_review"] += batch["needs_review"]
        bucket["failed"] += batch["files"].get(FAILED, 0)
        bucket["rechecked"] += batch["rechecked"]
        bucket["audio_seconds"] += batch["audio_seconds"]

    def _add_to_workers(self, now: float, batch: dict) -> None:
        workers = batch["workers"] or {}
        share = 1 / max(1, len(workers))  # a summary covers one batch, answered by one worker
        for name, differences in workers.items():
            worker = self.workers.setdefault(name, {"files": 0, "audio_seconds": 0.0, "first_seen": now,
                                                    "minutes": deque(maxlen=60)})
            worker.update(last_seen=now, drift=list(differences))
            files = sum(batch["files"].values()) * share
            worker["files"] += files
            worker["audio_seconds"] += batch["audio_seconds"] * share
            minute = int(now // 60) * 60
            if not worker["minutes"] or worker["minutes"][-1][0] != minute:
                worker["minutes"].append([minute, 0.0, 0.0])
            worker["minutes"][-1][1] += files
            worker["minutes"][-1][2] += batch["audio_seconds"] * share
        self.active_workers()

    def to_dict(self) -> dict:
        """Plain figures for a client (`Run.monitor`), a page or a JSON dump."""
        drift = self.drift()
        return {
            "run": self.run, "started": self.started, "updated": self.updated, "files": dict(self.files),
            "answered": self.answered, "remaining": self.remaining, "active": self.active, "languages": dict(self.languages),
            "models": {m: dict(c) for m, c in self.models.items()}, "agreement": dict(self.agreement),
            "review": dict(self.review), "needs_review": self.needs_review, "errors": dict(self.errors),
            "confidence": self.confidence.tolist(), "confidence_sum": self.confidence_sum,
            "audio_seconds": self.audio_seconds, "speech_seconds": self.speech_seconds, "rechecked": self.rechecked,
            "timeline": list(self.timeline), "baseline": self.baseline.to_dict(), "baseline_source": self.baseline_source,
            "recent": self.recent.to_dict(), "drift": drift, "drift_state": {k: state(v) for k, v in drift.items()},
            "workers": {name: {"files": w["files"], "audio_seconds": w["audio_seconds"], "drift": w["drift"],
                               "last_seen": w["last_seen"], "minutes": [list(m) for m in w["minutes"]]}
                        for name, w in self.active_workers().items()},
        }


def _answered(batch: dict) -> int:
    return sum(n for kind, n in batch["files"].items() if kind != FAILED)


def from_ledger(ledger, run_id: int, baseline_run_id: int | None = None) -> dict:
    """The drift figures of a run as its ledger holds them (`RunFigures.to_dict`'s drift keys):
    its first `BASELINE_FILES` answered files, or an earlier run's latest, against its latest
    `WINDOW_FILES` (those after the baseline). Two index range reads: cheap at any size."""
    if baseline_run_id is None:
        first = ledger.finished_window(run_id, BASELINE_FILES)
        baseline = Distribution.of(first)
        done = ledger.counts(run_id).get("done", 0)
        recent = Distribution.of(ledger.finished_window(run_id, min(WINDOW_FILES, max(0, done - len(first))),
                                                        latest=True))
    else:
        baseline = Distribution.of(ledger.finished_window(baseline_run_id, BASELINE_FILES, latest=True))
        recent = Distribution.of(ledger.finished_window(run_id, WINDOW_FILES, latest=True))
    scores = drift(baseline, recent)
    return {"baseline": baseline.to_dict(), "recent": recent.to_dict(), "drift": scores,
            "drift_state": {k: state(v) for k, v in scores.items()}}


@dataclass
class Monitor:
    """A run's model-behaviour figures as pandas frames, for Jupyter (`Run.monitor`)."""

    run: str
    source: str  # "scheduler" (live) or "ledger"
    baseline_source: str
    drift: object  # DataFrame: measure, psi, state
    languages: object  # DataFrame: language, baseline and recent shares
    confidence: object  # DataFrame: bin edges, baseline and recent shares
    timeline: object  # DataFrame per minute (live figures only)
    workers: object  # DataFrame per active worker (live figures only)
    figures: dict  # everything, as the scheduler or the ledger gave it

    @classmethod
    def of(cls, run: str, figures: dict, source: str) -> Monitor:
        import pandas as pd

        baseline, recent = (Distribution.from_dict(figures[side]) for side in ("baseline", "recent"))
        languages = sorted(set(baseline.languages) | set(recent.languages),
                           key=lambda k: -(baseline.languages[k] + recent.languages[k]))
        edges = np.linspace(0, 1, CONFIDENCE_BINS + 1)
        workers = pd.DataFrame([{"worker": name, **{k: v for k, v in w.items() if k != "minutes"}}
                                for name, w in figures.get("workers", {}).items()])
        timeline = pd.DataFrame(figures.get("timeline", []))
        if len(timeline):
            timeline["minute"] = pd.to_datetime(timeline["minute"], unit="s", utc=True)
        return cls(
            run, source, figures.get("baseline_source", "first files"),
            pd.DataFrame({"measure": list(figures["drift"]), "psi": [figures["drift"][m] for m in figures["drift"]],
                          "state": [figures["drift_state"][m] for m in figures["drift"]]}),
            pd.DataFrame({"language": languages, "baseline": [_share(baseline.languages, k) for k in languages],
                          "recent": [_share(recent.languages, k) for k in languages]}),
            pd.DataFrame({"low": edges[:-1], "high": edges[1:], "baseline": shares(baseline.confidence),
                          "recent": shares(recent.confidence)}),
            timeline, workers, figures)


def _share(counts: Counter, key: str) -> float:
    total = sum(counts.values())
    return counts[key] / total if total else 0.0


def shares(counts) -> np.ndarray:
    """Counts as fractions of their sum (zeros when empty)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total else np.zeros(len(counts))
