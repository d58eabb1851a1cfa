"""Run figures: summaries of recorded batches, bounded aggregates, and PSI drift."""

import random
import time

import numpy as np
import pytest

from lid_dask import figures as f
from lid_dask.results import FileResult, ModelVerdict


def answer(language: str, confidence: float = 0.9, agreement: str = "single", **extra) -> FileResult:
    return FileResult(uri=f"file://{random.random()}", language=language, confidence=confidence, agreement=agreement,
                      duration=10.0, speech_seconds=8.0, models=(ModelVerdict("m", language, confidence, {}),),
                      extra=extra)


def silent() -> FileResult:
    return FileResult(uri="file://silent", error_kind="no_speech", needs_review=True, review_reasons=("no_speech",),
                      duration=5.0)


def batches(languages: list[str], size: int = 50, confidence=lambda: 0.9):
    for start in range(0, len(languages), size):
        yield f.summary([answer(lang, confidence()) for lang in languages[start:start + size]],
                        workers={"w1": []})


def test_a_summary_counts_outcomes_languages_bins_and_failures():
    batch = f.summary([answer("en", 0.97), answer("de", 0.42, agreement="split", rechecked_windows=1), silent(),
                       FileResult(uri="file://bad", error_kind="corrupt", error="bad")], errors=["lost"],
                      remaining=7, workers={"w1": ["packages.numpy: 2.0 != 2.1"]})
    assert batch["files"] == {"identified": 2, "no_speech": 1, "failed": 2}
    assert batch["languages"] == {"en": 1, "de": 1}
    assert batch["errors"] == {"corrupt": 1, "lost": 1}
    assert batch["confidence"][19] == 1 and batch["confidence"][8] == 1 and sum(batch["confidence"]) == 2
    assert batch["rechecked"] == 1 and batch["needs_review"] == 1 and batch["review"] == {"no_speech": 1}
    assert batch["audio_seconds"] == 25.0 and batch["remaining"] == 7


def test_confidence_bins_match_prometheus_le_buckets():
    assert [f.confidence_bin(c) for c in (0.0, 0.05, 0.0501, 0.5, 0.95, 0.951, 1.0)] == [0, 0, 1, 9, 18, 19, 19]


def test_psi_reads_zero_for_the_same_mix_and_high_for_a_new_one():
    assert f.psi([100, 100, 100], [100, 100, 100]) == pytest.approx(0.0)
    assert f.psi([300, 0, 0], [0, 0, 300]) > 5
    # The usual reading: a 10-point shift between two languages is under the watch level.
    assert f.psi([500, 500], [450, 550]) < f.WATCH


@pytest.mark.parametrize("seed", range(5))
def test_the_same_mix_throughout_stays_stable_and_a_new_mix_drifts(seed):
    rng = random.Random(seed)
    mix = ["en"] * 5 + ["de"] * 3 + ["fr", "es"]
    same = f.RunFigures("same")
    for batch in batches([rng.choice(mix) for _ in range(1500)]):
        same.add(batch)
    assert {f.state(score) for score in same.drift().values()} == {"stable"}, same.drift()

    shifted = f.RunFigures("shifted")
    second = ["fr"] * 6 + ["it"] * 4
    for batch in batches([rng.choice(mix) for _ in range(750)] + [rng.choice(second) for _ in range(750)]):
        shifted.add(batch)
    assert f.state(shifted.drift()["language_mix"]) == "drift"


def test_confidence_sliding_is_drift():
    run = f.RunFigures("sliding")
    for batch in batches(["en"] * 600, confidence=lambda: 0.9):
        run.add(batch)
    for batch in batches(["en"] * 600, confidence=lambda: 0.45):
        run.add(batch)
    assert f.state(run.drift()["confidence"]) == "drift"
    assert f.state(run.drift()["language_mix"]) == "stable"


def test_no_state_until_the_sampling_noise_is_below_the_watch_level():
    run = f.RunFigures("young")
    for batch in batches(["en", "de"] * ((f.BASELINE_FILES + 40) // 2)):
        run.add(batch)  # the baseline and 40 recent files: two languages, noise 10.8 x (1/1000 + 1/40) > 0.1
    assert run.drift()["language_mix"] is None and f.state(None) == "warming up"
    for batch in batches(["en", "de"] * 100):
        run.add(batch)  # 240 recent files: 10.8 x (1/1000 + 1/240) = 0.056
    assert f.state(run.drift()["language_mix"]) == "stable"


@pytest.mark.parametrize("languages", [4, 20])
def test_same_mix_many_languages_stays_below_watch_once_scored(languages):
    """Twenty languages at 500 + 200 files read PSI 0.14 on average: they are not scored then, and
    once scored, the same mix stays stable (the noise the helper measured in the review)."""
    rng = random.Random(languages)
    names = [f"l{i}" for i in range(languages)]
    run = f.RunFigures("many")
    scored = []
    for batch in batches([rng.choice(names) for _ in range(f.BASELINE_FILES + 2 * f.WINDOW_FILES)], size=20):
        run.add(batch)
        if run.drift()["language_mix"] is not None:
            scored.append(run.drift()["language_mix"])
    assert scored and max(scored) < f.WATCH


def test_a_baseline_from_an_earlier_run_replaces_the_first_files():
    earlier = f.Distribution()
    for batch in batches(["de"] * 400):
        earlier.add(batch)
    run = f.RunFigures("compared")
    run.set_baseline(earlier, "run earlier")
    for batch in batches(["en"] * 400):
        run.add(batch)
    assert f.state(run.drift()["language_mix"]) == "drift" and run.baseline_source == "run earlier"


def test_memory_is_bounded_whatever_the_number_of_files_and_languages():
    """300 languages, 50 workers coming and going, a third of the batches failed only, 25 hours."""
    run = f.RunFigures("big")
    names = [f"l{i:03d}" for i in range(300)]
    start = time.time() - 25 * 3600
    for i in range(3000):
        batch = f.summary([answer(names[(i * 7 + j) % 300]) for j in range(10)], workers={f"w{i % 50}": []})
        if i % 3 == 0:
            batch = f.summary([], errors=["network"] * 5, workers={f"w{i % 50}": []})
        batch["time"] = start + i * 30.0
        run.add(batch)
    assert len(run.languages) == f.TOP_LANGUAGES + 1 and run.languages[f.OTHER] > 0
    assert all(len(counts) <= f.TOP_LANGUAGES + 1 for counts in run.models.values())
    assert len(run.timeline) == f.TIMELINE_MINUTES  # a day of minutes, the oldest gone
    assert len(run._recent_batches) <= f.WINDOW_FILES and run.recent.files <= f.WINDOW_FILES + 10
    recent = {i % 50 for i in range(3000) if start + i * 30.0 > time.time() - f.WORKER_IDLE_SECONDS}
    assert len(run.active_workers()) == len(recent) < 50  # only those seen in the last 15 minutes
    assert all(len(w["minutes"]) <= 60 for w in run.workers.values())
    assert sum(run.files.values()) == 2000 * 10 + 1000 * 5


def test_the_recent_window_forgets_what_is_older_than_its_files():
    run = f.RunFigures("window")
    for batch in batches(["en"] * 2000):
        run.add(batch)
    assert f.WINDOW_FILES - 50 <= run.recent.files <= f.WINDOW_FILES + 50
    assert run.baseline.files == f.BASELINE_FILES
    assert np.array(run.recent.confidence).sum() == run.recent.files


def test_an_empty_side_is_never_scored_even_with_one_category():
    """A single model always agrees with itself: one category, but nothing recent to compare yet."""
    baseline = f.Distribution(agreement=(800, 0), no_speech=(0, 800), languages={"en": 800})
    assert f.drift(baseline, f.Distribution()) == dict.fromkeys(f.MEASURES)
    same = f.Distribution(agreement=(300, 0), no_speech=(0, 300), languages={"en": 300})
    assert f.drift(baseline, same)["agreement"] < 0.01  # only the half-file smoothing tells them apart
