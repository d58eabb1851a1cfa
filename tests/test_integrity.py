"""No answer lands on the wrong file: orchestrators stopped and restarted on one long-lived cluster.

The cluster (a `dask scheduler` and a `dask worker` process, as `cluster/` deploys them) keeps
running while orchestrators come and go, so batches cancelled by a stopped orchestrator still
finish on the worker and send their results event. Every recorded answer is checked against the
answer the engine gives that file alone.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from lid_dask.engine import Identifier
from lid_dask.runs import Run

from . import fault_plugins  # noqa: F401 - registers the content-hash backend here too
from .conftest import ROOT
from .conftest import run as sh

VOICES = ["en", "de", "fr", "es", "it", "pl"]
TEXTS = ["The river was quiet this morning and the market opened late.",
         "Please call me back when you have read the whole letter.",
         "Seven small boats waited in the harbour for the wind to turn."]


@pytest.fixture(scope="module")
def varied_clips(tmp_path_factory) -> Path:
    """60 clips whose durations all differ (speed and trailing silence vary) in six voices."""
    folder = tmp_path_factory.mktemp("varied")
    for i in range(60):
        raw = folder / f"raw{i:02d}.wav"
        sh("espeak-ng", "-v", VOICES[i % len(VOICES)], "-s", str(130 + 7 * (i % 9)), "-w", str(raw),
           TEXTS[i % len(TEXTS)])
        sh("sox", "-R", "-D", str(raw), "-r", "16000", str(folder / f"clip{i:02d}.wav"), "pad", "0",
           f"{0.05 * i:.2f}")
        raw.unlink()
    return folder


def answers_alone(clips: list[Path], **config) -> dict[str, tuple]:
    """What the engine says about each file on its own: (language, duration, speech seconds)."""
    identifier = Identifier(**config)
    answers = {}
    for clip in clips:
        (result,) = identifier.identify_batch([str(clip)])
        answers[str(clip)] = (result.language, result.duration, round(result.speech_seconds, 6))
    return answers


def recorded_answers(run: Run) -> dict[str, tuple]:
    frame = run.results()
    assert set(frame.state) == {"done"}, frame.state.value_counts()
    return {row.uri: (row.language, row.duration, round(row.speech_seconds, 6)) for row in frame.itertuples()}


def wrong_answers(run: Run, expected: dict[str, tuple]) -> list[str]:
    recorded = recorded_answers(run)
    assert set(recorded) == set(expected)
    return [f"{Path(uri).name}: recorded {recorded[uri]}, alone {expected[uri]}"
            for uri in expected if recorded[uri] != expected[uri]]


def orchestrator(clips: Path, name: str, db: str, scheduler: str, *extra: str) -> subprocess.Popen:
    # The orchestrator checks the models it is given, so the test backends are registered here too,
    # as a plug-in is installed where a run starts as well as on the workers.
    start = "import sys, tests.fault_plugins; from lid_dask.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", start, "run", str(clips), "--name", name, "--db", db,
               "--scheduler", scheduler, "--no-progress", *extra]
    return subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_first_lease(db: str, name: str, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until `process` holds the run's lock and has leased files (what it leases is in flight)."""
    engine = sa.create_engine(db)
    query = sa.text("SELECT count(*) FROM files JOIN runs ON runs.id = files.run_id "
                    "WHERE runs.name = :name AND files.state = 'leased' AND runs.lock_owner LIKE :owner")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            try:
                with engine.connect() as connection:
                    if connection.execute(query, dict(name=name, owner=f"%:{process.pid}:%")).scalar():
                        return
            except sa.exc.ProgrammingError:  # no tables yet
                pass
            time.sleep(0.05)
    finally:
        engine.dispose()
    raise TimeoutError("the orchestrator leased nothing")


def stop(process: subprocess.Popen, sig: int) -> str:
    os.killpg(process.pid, sig)
    _, stderr = process.communicate(timeout=120)
    return stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_an_orchestrator_stopped_and_rerun_at_once_records_every_answer_on_its_file(
        sig, varied_clips, pg_url, long_lived_cluster):
    """The reproduction of the defect: 60 clips, batches of 16, stopped 4 s after the first lease."""
    clips = sorted(varied_clips.glob("*.wav"))
    expected = answers_alone(clips)
    args = (varied_clips, "restart", pg_url, long_lived_cluster, "--batch-files", "16")
    first = orchestrator(*args)
    wait_for_first_lease(pg_url, "restart", first)
    time.sleep(4)
    stop(first, sig)
    second = orchestrator(*args)
    _, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr
    run = Run("restart", pg_url)
    assert run.status().counts["done"] == 60
    assert wrong_answers(run, expected) == []


@pytest.mark.slow
def test_many_random_stops_and_restarts_on_one_cluster(varied_clips, pg_url, long_lived_cluster):
    """Seeded: orchestrators stopped by SIGKILL or SIGTERM at random moments, restarted at once."""
    rng = random.Random(20261129)
    clips = sorted(varied_clips.glob("*.wav"))
    config = dict(models="content-hash", vad="none", windows="first:1x4")
    expected = answers_alone(clips, **config)
    extra = ["--model", "content-hash", "--vad", "none", "--windows", "first:1x4"]
    stops = 0
    for _ in range(10):
        process = orchestrator(varied_clips, "random", pg_url, long_lived_cluster,
                               "--batch-files", str(rng.choice([2, 3, 5, 8])), *extra)
        try:
            wait_for_first_lease(pg_url, "random", process)
        except AssertionError:  # it finished before leasing anything: the run is complete
            break
        time.sleep(rng.uniform(0.2, 2.5))
        if process.poll() is not None:
            break
        stop(process, rng.choice([signal.SIGKILL, signal.SIGTERM]))
        stops += 1
    final = orchestrator(varied_clips, "random", pg_url, long_lived_cluster, *extra)
    _, stderr = final.communicate(timeout=600)
    assert final.returncode == 0, stderr
    assert stops >= 5
    run = Run("random", pg_url)
    assert run.status().counts["done"] == 60
    assert wrong_answers(run, expected) == []


@pytest.mark.slow
def test_a_cancelled_batch_answering_after_a_restart_is_counted_and_ignored(varied_clips, pg_url,
                                                                           long_lived_cluster, tmp_path):
    """The first orchestrator's second batch (a quarter-size first batch of 1 file, then 4 files, on
    the one worker thread) takes 12 s: the second orchestrator is listening when its answer arrives."""
    folder = tmp_path / "sixteen"
    folder.mkdir()
    for clip in sorted(varied_clips.glob("*.wav"))[:16]:
        shutil.copy(clip, folder)
    config = dict(vad="none", windows="first:1x4")
    expected = answers_alone(sorted(folder.glob("*.wav")), models="content-hash?delay=0", **config)
    args = (folder, "late", pg_url, long_lived_cluster, "--model", "content-hash?delay=3.0", "--vad", "none",
            "--windows", "first:1x4")
    first = orchestrator(*args, "--batch-files", "12")
    wait_for_first_lease(pg_url, "late", first)
    time.sleep(1)
    stop(first, signal.SIGKILL)
    second = orchestrator(*args, "--batch-files", "30")
    _, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr
    assert "ignored: a results event for a batch this orchestrator did not issue" in stderr
    assert "answers were not recorded" in stderr and "not a batch of this session (1)" in " ".join(stderr.split())
    assert wrong_answers(Run("late", pg_url), expected) == []
