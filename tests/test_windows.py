"""Window placement (property-based) and partial decoding on real files."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lid_dask.audio import load_windows
from lid_dask.errors import AudioError
from lid_dask.windows import WindowPlan

plans = st.builds(WindowPlan, strategy=st.sampled_from(["first", "spread", "whole", "auto"]),
                  count=st.integers(1, 8), length=st.floats(1.0, 30.0), max_whole=st.floats(10.0, 600.0))
durations = st.floats(0.05, 6 * 3600.0)


@given(plans, durations)
def test_windows_lie_inside_the_file(plan, duration):
    windows = plan.plan(duration)
    assert windows
    for window in windows:
        assert 0 <= window.start < duration
        assert window.end <= duration + 1e-6
        assert 0 < window.duration <= plan.length + 1e-9


@given(plans, durations)
def test_windows_are_ordered_and_bounded(plan, duration):
    windows = plan.plan(duration)
    starts = [w.start for w in windows]
    assert starts == sorted(starts)
    # never more decoding than the plan allows: count windows, or the whole (short) file
    budget = max(plan.count * plan.length, min(duration, plan.max_whole) + plan.length)
    assert sum(w.duration for w in windows) <= budget + 1e-6


@given(plans, st.floats(0.05, 6 * 3600.0))
def test_whole_covers_short_files(plan, duration):
    plan = WindowPlan("whole", count=plan.count, length=plan.length, max_whole=plan.max_whole)
    if duration > plan.max_whole:
        return
    windows = plan.plan(duration)
    covered = 0.0
    for window in windows:
        assert window.start <= covered + 1e-6  # no gap
        covered = max(covered, window.end)
    assert covered == pytest.approx(duration)


@given(st.integers(1, 10), st.floats(1.0, 30.0), st.floats(100.0, 36000.0))
def test_spread_avoids_only_listening_to_the_intro(count, length, duration):
    if count * length >= duration:
        return
    windows = WindowPlan("spread", count=count, length=length).plan(duration)
    assert len(windows) == count
    assert windows[-1].start >= (duration - length) * (count - 1) / count - 1e-6


def test_unknown_duration_reads_only_the_start():
    assert [(w.start, w.duration) for w in WindowPlan("spread").plan(None)] == [(0.0, 10.0)]


@pytest.mark.parametrize("text,expected", [
    ("spread:5x10", WindowPlan("spread", 5, 10.0)),
    ("first", WindowPlan("first")),
    ("auto:2", WindowPlan("auto", 2)),
    ("whole:x30", WindowPlan("whole", length=30.0)),
])
def test_parse(text, expected):
    assert WindowPlan.parse(text) == expected


@pytest.mark.parametrize("text", ["sideways", "spread:x", "spread:0", "spread:3x90", "spread:ax3"])
def test_parse_rejects_nonsense(text):
    with pytest.raises(ValueError):
        WindowPlan.parse(text)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["first", "spread", "whole"]), st.integers(1, 5), st.floats(2.0, 15.0))
def test_decoded_windows_match_the_plan_and_no_more(long_file, strategy, count, length):
    """Real decoding: each window covers what it claims, and FFmpeg decodes little beyond it."""
    plan = WindowPlan(strategy, count=count, length=length)
    audio = load_windows(str(long_file), plan)
    planned = plan.plan(audio.duration)
    assert len(audio.windows) == len(planned)
    for got, want, samples in zip(audio.windows, planned, audio.samples):
        assert got.start == pytest.approx(want.start)
        assert got.duration == pytest.approx(want.duration, abs=0.08)
        assert len(samples) == pytest.approx(want.duration * 16000, abs=0.08 * 16000)
    needed = sum(w.duration for w in planned)
    assert audio.source_seconds <= needed + 0.6 * len(planned) + 0.5


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=4096), st.sampled_from([".wav", ".mp3", ".ogg", ".m4a", ".flac", ""]))
def test_random_bytes_never_crash(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"random{suffix}"
    path.write_bytes(data)
    try:
        load_windows(str(path), WindowPlan())
    except AudioError as error:
        assert error.kind.value != "internal", error


@settings(max_examples=30, deadline=None)
@example(cut=689, garbage=b"\xc0")  # once made a frame whose format changed mid-stream
@given(st.integers(0, 2000), st.binary(min_size=0, max_size=512))
def test_damaged_real_files_never_crash(tmp_path_factory, encoded, cut, garbage):
    """Valid headers with damaged bodies: the hardest case for a decoder."""
    for kind in ("mp3", "ogg", "flac", "m4a", "wav"):
        data = encoded[kind].read_bytes()
        path = tmp_path_factory.mktemp("damaged") / f"x.{kind}"
        path.write_bytes(data[: max(1, len(data) - cut * 37)][:cut * 50 + 64] + garbage)
        try:
            load_windows(str(path), WindowPlan())
        except AudioError as error:
            assert error.kind.value != "internal", error


@given(st.lists(st.tuples(st.integers(0, 20_000), st.integers(1, 5_000)), max_size=12))
def test_covered_seconds_counts_each_millisecond_once(spans_ms):
    """Against a brute-force count of covered milliseconds."""
    from lid_dask.windows import covered_seconds

    spans = [(start / 1000, (start + length) / 1000) for start, length in spans_ms]
    covered = {ms for start, length in spans_ms for ms in range(start, start + length)}
    assert covered_seconds(spans) == pytest.approx(len(covered) / 1000, abs=1e-9)
