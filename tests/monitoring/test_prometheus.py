"""A real Prometheus scraping a real scheduler during real runs (fixtures: conftest.py).

Runs use the ``tone-language`` test backend (tests/fault_plugins.py): each file is a sub-second
tone whose pitch is its language and whose loudness its confidence, so a run of a thousand files
has the language mix a test wants and takes seconds. The ledger is the truth the scraped figures
are held to; the drift alert is held to a run whose second half is another language mix, and to
one with the same mix throughout.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lid_dask.figures import CONFIDENCE_BINS, WATCH, confidence_bin
from lid_dask.runs import Run

from .. import fault_plugins  # noqa: F401 - the orchestrator (this process) checks the test backend too
from ..fault_plugins import write_tone
from .promql import dashboard, dashboard_queries

pytestmark = pytest.mark.slow

ENGINE = dict(models="tone-language", vad="none", windows="first:1x1")
AMPLITUDES = (0.3, 0.55, 0.7, 0.8, 0.9)  # 0.3: low confidence, marked for review


def write_tones(folder: Path, languages: list[str], amplitudes=AMPLITUDES) -> Path:
    folder.mkdir(parents=True)
    for i, language in enumerate(languages):
        write_tone(folder / f"{i:04d}-{language}.wav", language, amplitude=amplitudes[i % len(amplitudes)])
    return folder


def execute(name: str, folder: Path, db: str, client) -> Run:
    """Register `folder` in run `name` (new or not) and run it to the end."""
    run = Run.create(name, [str(folder)], db=db, **ENGINE)
    run.execute(client, progress=False)
    return run


def by(results: dict[tuple, float], label: str) -> dict[str, float]:
    return {dict(key)[label]: value for key, value in results.items()}


def counted(results: dict[tuple, float], label: str) -> dict[str, float]:
    """`by`, less the series that stand at 0 (bounded label sets are served from the start)."""
    return {key: value for key, value in by(results, label).items() if value}


def test_prometheus_scrapes_during_a_run_and_ends_with_the_ledgers_counts(prometheus, monitored_client,
                                                                           ledger_url, tmp_path):
    """800 tones in four languages (a fifth of them quiet), 10 too short, 4 corrupt, 2 empty, the
    odd ones spread through the run (a counter's first scrape is no increase to `rate`)."""
    folder = write_tones(tmp_path / "audio", [("en", "de", "fr", "es")[i % 4] for i in range(800)])
    for i in range(10):
        write_tone(folder / f"{80 * i:04d}-short.wav", "en", seconds=0.3)
    for i in range(4):
        (folder / f"{200 * i + 50:04d}-corrupt.wav").write_bytes(os.urandom(2000 + i))
    for i in range(2):
        (folder / f"{400 * i + 150:04d}-empty.wav").write_bytes(b"")
    start = time.time()
    run = execute("scraped", folder, ledger_url, monitored_client)
    ledger = run.results()
    assert len(ledger) == 816 and (ledger.attempts == 1).all()  # no retries: attempts are files here
    identified = ledger[ledger.language.notna() & (ledger.language != "")]
    assert Counter(identified.language) == {"en": 200, "de": 200, "fr": 200, "es": 200}  # the tones were heard
    prometheus.wait_for('sum(lid_dask_files_total{run="scraped"})', len(ledger))

    files = counted(prometheus.query('lid_dask_files_total{run="scraped"}'), "outcome")
    dead = ledger[ledger.state == "dead"]
    without_language = ledger[(ledger.state == "done") & ~ledger.index.isin(identified.index)]  # why: its reason
    assert files == {"identified": len(identified), "failed": len(dead),
                     **Counter(r for text in without_language.review_reasons for r in text.split(",")
                               if r in ("no_speech", "too_short"))}
    assert files == {"identified": 800, "failed": 6, "too_short": 10}
    assert counted(prometheus.query('lid_dask_errors_total{run="scraped"}'), "kind") == Counter(dead.error_kind)
    assert by(prometheus.query('lid_dask_errors_total{run="scraped"}'), "kind")["network"] == 0  # served before any
    assert by(prometheus.query('lid_dask_answers_total{run="scraped"}'), "language") == Counter(identified.language)
    assert by(prometheus.query('lid_dask_predictions_total{run="scraped"}'), "language") == Counter(identified.language)
    assert by(prometheus.query('lid_dask_agreement_total{run="scraped"}'), "agreement") == Counter(identified.agreement)
    reasons = Counter(r for text in ledger.review_reasons.dropna() for r in text.split(",") if r)
    assert counted(prometheus.query('lid_dask_review_reasons_total{run="scraped"}'), "reason") == reasons
    assert set(reasons) == {"low_confidence", "too_short"}
    (review,) = prometheus.query('lid_dask_files_needing_review_total{run="scraped"}').values()
    assert review == ledger.needs_review.fillna(False).sum() == 160 + 10
    bins = Counter(confidence_bin(c) for c in identified.confidence)
    expected = {f"{(i + 1) / CONFIDENCE_BINS:g}" if i < CONFIDENCE_BINS - 1 else "+Inf":
                float(sum(bins[j] for j in range(i + 1))) for i in range(CONFIDENCE_BINS)}
    assert by(prometheus.query('lid_dask_confidence_bucket{run="scraped"}'), "le") == expected
    (audio,) = prometheus.query('lid_dask_audio_seconds_total{run="scraped"}').values()
    assert math.isclose(audio, ledger.duration.fillna(0).sum(), rel_tol=1e-9)
    assert list(prometheus.query('lid_dask_files_remaining{run="scraped"}').values()) == [0.0]
    # 816 files fill no baseline of 1,000: no drift score rather than a sample's noise read as drift.
    assert prometheus.query('lid_dask_drift_psi{run="scraped"}') == {}
    assert list(prometheus.query('lid_dask_run_active{run="scraped"}').values()) == [0.0]  # its session ended

    # Scraped while the run ran, not only at its end.
    (totals,) = prometheus.query_range('sum(lid_dask_files_total{run="scraped"})', start).values()
    assert any(0 < n < len(ledger) for n in totals), totals

    # The dashboard's run picker lists the run, and every panel has data from it.
    assert "scraped" in prometheus.get("/api/v1/label/run/values", **{"match[]": "lid_dask_files_total"})
    empty = []
    for where, expr in dashboard_queries(dashboard()):
        expr = expr.replace("$__rate_interval", "5s").replace('run=~"$run"', 'run=~"scraped"')
        values = [v for series in prometheus.query_range(expr, start).values() for v in series if math.isfinite(v)]
        if not values and "ALERTS" not in expr and "drift_psi" not in expr:  # alerts: if one fired; drift: 1,000+ files
            empty.append(where)
    assert empty == []


MIX = {"en": 0.4, "de": 0.3, "fr": 0.2, "es": 0.1}


def two_halves(name: str, first: dict[str, float], second: dict[str, float], db: str, client, folder: Path) -> float:
    """Run `name` over 1,000 files drawn from the `first` mix (the baseline), then 1,000 new files drawn from the
    `second` (registered in the same run and run to the end again), with confidences drawn alike
    in both: a sample's noise, as in an archive. Returns when it started."""
    rng = np.random.default_rng(20261205)
    start = time.time()
    for half, mix in (("first", first), ("second", second)):
        languages = rng.choice(list(mix), size=1000, p=list(mix.values()))
        amplitudes = rng.choice(AMPLITUDES, size=1000)
        execute(name, write_tones(folder / half, languages.tolist(), amplitudes.tolist()), db, client)
    return start


def test_a_run_whose_second_half_is_another_language_mix_fires_the_drift_alert(prometheus, monitored_client,
                                                                               ledger_url, tmp_path):
    start = two_halves("drifting", MIX, {"en": 0.4, "ja": 0.4, "zh": 0.2}, ledger_url, monitored_client, tmp_path)
    prometheus.wait_for('sum(lid_dask_files_total{run="drifting"})', 2000)
    psi = by(prometheus.query('lid_dask_drift_psi{run="drifting"}'), "measure")
    assert psi["language_mix"] > 0.25
    assert all(psi[measure] < WATCH for measure in ("confidence", "agreement", "no_speech")), psi
    deadline = time.monotonic() + 60
    while True:
        drift = [a for a in prometheus.alerts() if a["labels"]["alertname"] == "LidDaskDrift"
                 and a["labels"].get("run") == "drifting"]
        if any(a["state"] == "firing" for a in drift):
            break
        assert time.monotonic() < deadline, drift
        time.sleep(0.5)
    assert [(a["labels"]["measure"], a["labels"]["severity"]) for a in drift] == [("language_mix", "warning")]
    assert drift[0]["annotations"]["summary"].startswith("Run drifting: the language_mix drifted (PSI ")
    window = f"{math.ceil(time.time() - start) + 1}s"  # what the same-mix test reads, and finds empty there
    assert prometheus.query(f'count_over_time(ALERTS{{run="drifting", alertname="LidDaskDrift"}}[{window}])')


def test_a_run_with_the_same_mix_throughout_fires_nothing(prometheus, monitored_client, ledger_url, tmp_path):
    start = two_halves("steady", MIX, MIX, ledger_url, monitored_client, tmp_path)
    prometheus.wait_for('sum(lid_dask_files_total{run="steady"})', 2000)
    time.sleep(5)  # more than a shortened `for:` and a few evaluations after the last figures
    rules = {r["name"]: r for group in prometheus.get("/api/v1/rules")["groups"] for r in group["rules"]}
    assert rules["LidDaskDrift"]["health"] == "ok" and rules["LidDaskDrift"]["duration"] == 2  # it could fire
    window = f"{math.ceil(time.time() - start) + 1}s"
    psi = by(prometheus.query(f'max_over_time(lid_dask_drift_psi{{run="steady"}}[{window}])'), "measure")
    assert set(psi) == {"language_mix", "confidence", "agreement", "no_speech"}  # scored, so a drift could show
    assert max(psi.values()) < WATCH, psi
    assert prometheus.query(f'count_over_time(ALERTS{{run="steady"}}[{window}])') == {}  # not even pending
