"""lid-dask's figures on the scheduler's /metrics, beside Dask's own.

Prometheus conventions: base units (seconds), ``_total`` for counters, and a ``run`` label but no
worker label (SaladCloud machine ids churn, and each would be a new series). Languages are
bounded like the figures themselves: the run's first `TOP_LANGUAGES` plus "other". A drift score
is absent until both its sides hold enough files, rather than reading zero.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from lid_dask.monitor import plugin
from lid_dask.figures import CONFIDENCE_BINS, FAILED, IDENTIFIED, RunFigures
from lid_dask.vocabulary import ErrorKind, ReviewReason

OUTCOMES = (IDENTIFIED, ErrorKind.NO_SPEECH.value, ErrorKind.TOO_SHORT.value, FAILED)
FAILURES = tuple(kind.value for kind in ErrorKind if not kind.is_answer)
REVIEW_REASONS = tuple(reason.value for reason in ReviewReason)


class LidDaskCollector(Collector):
    def collect(self):
        families = _families()
        for monitor in list(plugin.plugins):
            for figures in list(monitor.runs.values()):
                _add(families, figures)
        yield from families.values()


def _families() -> dict:
    counter, gauge = CounterMetricFamily, GaugeMetricFamily
    return {
        "files": counter("lid_dask_files", "Files recorded, by outcome (identified, no_speech, too_short, failed)",
                         labels=["run", "outcome"]),
        "audio": counter("lid_dask_audio_seconds", "Seconds of audio in the files recorded", labels=["run"]),
        "speech": counter("lid_dask_speech_seconds", "Seconds of speech found in them", labels=["run"]),
        "languages": counter("lid_dask_answers", "Files identified, by language (top languages, then other)",
                             labels=["run", "language"]),
        "predictions": counter("lid_dask_predictions", "Each model's answers, by language (top languages, then "
                               "other)", labels=["run", "model", "language"]),
        "agreement": counter("lid_dask_agreement", "Files identified, by how the models agreed",
                             labels=["run", "agreement"]),
        "review": counter("lid_dask_review_reasons", "Reasons files were marked for review", labels=["run", "reason"]),
        "needs_review": counter("lid_dask_files_needing_review", "Files marked for review", labels=["run"]),
        "errors": counter("lid_dask_errors", "Failed files, by error class", labels=["run", "kind"]),
        "rechecked": counter("lid_dask_rechecked_files", "Files with a window the model listened to again",
                             labels=["run"]),
        "confidence": HistogramMetricFamily("lid_dask_confidence", "Confidence of the files identified",
                                            labels=["run"]),
        "remaining": gauge("lid_dask_files_remaining", "Files the run has still to do", labels=["run"]),
        "active": gauge("lid_dask_run_active", "1 while an orchestrator session processes the run", labels=["run"]),
        "last": gauge("lid_dask_last_record_timestamp_seconds", "When the run last recorded a batch",
                      labels=["run"]),
        "drift": gauge("lid_dask_drift_psi", "Population stability index of the recent files against the "
                       "baseline (0.1 watch, 0.25 drift)", labels=["run", "measure"]),
        "drifted": gauge("lid_dask_drifted_workers", "Active workers whose environment differs from the run's",
                         labels=["run"]),
        "workers": gauge("lid_dask_active_workers", "Workers that answered in the last 15 minutes", labels=["run"]),
    }


def _add(families: dict, figures: RunFigures) -> None:
    run = figures.run
    for outcome, n in _with_zeros(figures.files, OUTCOMES).items():
        families["files"].add_metric([run, outcome], n)
    families["audio"].add_metric([run], figures.audio_seconds)
    families["speech"].add_metric([run], figures.speech_seconds)
    for language, n in figures.languages.items():
        families["languages"].add_metric([run, language], n)
    for model, counts in figures.models.items():
        for language, n in counts.items():
            families["predictions"].add_metric([run, model, language], n)
    for kind, n in figures.agreement.items():
        families["agreement"].add_metric([run, kind], n)
    for reason, n in _with_zeros(figures.review, REVIEW_REASONS).items():
        families["review"].add_metric([run, reason], n)
    families["needs_review"].add_metric([run], figures.needs_review)
    for kind, n in _with_zeros(figures.errors, FAILURES).items():
        families["errors"].add_metric([run, kind], n)
    families["rechecked"].add_metric([run], figures.rechecked)
    cumulative, buckets = 0, []
    for i, n in enumerate(figures.confidence.tolist()):
        cumulative += n
        buckets.append(("+Inf" if i == CONFIDENCE_BINS - 1 else f"{(i + 1) / CONFIDENCE_BINS:g}", cumulative))
    families["confidence"].add_metric([run], buckets, sum_value=figures.confidence_sum)
    if figures.remaining is not None:
        families["remaining"].add_metric([run], figures.remaining)
    families["active"].add_metric([run], int(figures.active))
    families["last"].add_metric([run], figures.updated)
    for measure, score in figures.drift().items():
        if score is not None:
            families["drift"].add_metric([run, measure], score)
    families["drifted"].add_metric([run], len(figures.drifted_workers()))
    families["workers"].add_metric([run], len(figures.active_workers()))


def _with_zeros(counts, names) -> dict:
    """Every name of a bounded label set from the start: a series that appears with its first
    count loses that count to rate() and increase()."""
    return {**dict.fromkeys(names, 0), **counts}
