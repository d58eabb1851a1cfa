"""The monitor on a real run: its dashboard page in headless Chromium while the run runs, /metrics
against the ledger, Run.monitor live and from the ledger, lid-dask status with drift."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
import soundfile
from prometheus_client.parser import text_string_to_metric_families

from lid_dask.cluster import cluster_client
from lid_dask.monitor import PAGE
from lid_dask.ledger import Ledger, LedgerError
from lid_dask.runs import Run

from . import fault_plugins  # noqa: F401 - registers the content-hash backend here too
from .conftest import ROOT

FILES = 40
ENGINE = dict(models="content-hash?delay=0.5", vad="none", windows="first:1x4")


@pytest.fixture(scope="module")
def noise_clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(12)
    for i in range(FILES):
        soundfile.write(folder / f"clip{i:02d}.wav", rng.normal(0, 0.1, 16000 + 800 * i).astype(np.float32), 16000)
    return folder


def metrics(client) -> dict:
    """lid_dask samples of the scheduler's /metrics, parsed by prometheus_client: (name, labels) -> value."""
    text = urllib.request.urlopen(client.dashboard_link.replace("/status", "/metrics"), timeout=30).read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) if family.name.startswith("lid_dask")
            for sample in family.samples}


@pytest.mark.slow
def test_the_page_shows_a_running_run_and_metrics_match_the_ledger(noise_clips, monitored_client, browser, tmp_path):
    client = monitored_client
    run = Run.create("watched", [str(noise_clips)], f"sqlite:///{tmp_path / 'ledger.db'}", **ENGINE)
    worker = threading.Thread(target=run.execute, args=(client,), kwargs=dict(progress=False))
    worker.start()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(client.dashboard_link.replace("/status", PAGE))
        files = page.locator(".lid-dask-files")
        files.wait_for(timeout=60_000)
        deadline = time.monotonic() + 60
        while int(files.get_attribute("data-value")) == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        seen_during_run = int(files.get_attribute("data-value"))
        assert 0 < seen_during_run and worker.is_alive(), "the page showed answers only after the run"
        assert page.locator(".lid-dask-run").inner_text() == "watched"
        assert page.locator(".lid-dask-drift").count() == 4
        assert page.locator(".lid-dask-worker").count() == 1
        assert re.fullmatch("[0-9a-f]{16}", page.locator(".lid-dask-worker code").inner_text())  # its fingerprint
        assert page.locator("canvas").count() >= 5  # the charts are drawn
        page.screenshot(path=tmp_path / "monitor.png", full_page=True)
        assert (tmp_path / "monitor.png").stat().st_size > 20_000
    finally:
        worker.join(timeout=300)
    assert not worker.is_alive()

    counts = run.ledger.counts(run.info.id)
    assert counts["done"] + counts["dead"] == FILES
    recorded = metrics(client)
    assert sum(v for (name, labels), v in recorded.items() if name == "lid_dask_files_total"
               and dict(labels)["run"] == "watched") == FILES
    for language, files, seconds in run.ledger.answers(run.info.id):
        assert recorded[("lid_dask_answers_total", (("language", language), ("run", "watched")))] == files
    assert recorded[("lid_dask_audio_seconds_total", (("run", "watched"),))] == pytest.approx(
        sum(seconds for _, _, seconds in run.ledger.answers(run.info.id)))
    assert recorded[("lid_dask_confidence_count", (("run", "watched"),))] == FILES
    assert recorded[("lid_dask_files_remaining", (("run", "watched"),))] == 0

    page.reload()
    page.locator(".lid-dask-files").wait_for(timeout=30_000)
    deadline = time.monotonic() + 10
    while int(page.locator(".lid-dask-files").get_attribute("data-value")) != FILES and time.monotonic() < deadline:
        time.sleep(0.5)
    assert int(page.locator(".lid-dask-files").get_attribute("data-value")) == FILES

    live = run.monitor(client)
    assert live.source == "scheduler" and len(live.workers) == 1 and live.timeline["files"].sum() == FILES
    assert sorted(live.languages.language) == sorted(language for language, _, _ in run.ledger.answers(run.info.id))
    stored = run.monitor()
    assert stored.source == "ledger" and list(stored.drift.state) == ["warming up"] * 4


def test_the_dashboard_lists_the_page(monitored_client):
    status = urllib.request.urlopen(monitored_client.dashboard_link, timeout=30).read().decode()
    assert PAGE.strip("/") in status and "Lid Dask" in status


def test_a_scheduler_without_the_monitor_leaves_runs_working(noise_clips, tmp_path):
    """The orchestrator sends figures only where the monitor runs; elsewhere runs go on as before."""
    with cluster_client(n_workers=1, dashboard_address=None, preload=("tests.fault_plugins",),
                        scheduler_kwargs={"preload": []}) as client:
        run = Run.create("unwatched", [str(noise_clips)], f"sqlite:///{tmp_path / 'ledger.db'}",
                         **{**ENGINE, "models": "content-hash?delay=0"})
        run.execute(client, progress=False)
        assert run.ledger.counts(run.info.id)["done"] == FILES
        assert run.monitor(client).source == "ledger"


def test_status_shows_drift_against_an_earlier_run(noise_clips, tmp_path):
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    with cluster_client(n_workers=1, dashboard_address=None, preload=("tests.fault_plugins",)) as client:
        for name in ("before", "after"):
            Run.create(name, [str(noise_clips)], db, **{**ENGINE, "models": "content-hash?delay=0"}).execute(
                client, progress=False)
    shown = subprocess.run([sys.executable, "-m", "lid_dask.cli", "status", "after", "--db", db,
                            "--drift-baseline", "before"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "COLUMNS": "100"})
    assert shown.returncode == 0, shown.stderr
    assert "against the run before" in " ".join(shown.stdout.split())
    assert "too few files yet to tell a change from a sample's noise" in " ".join(shown.stdout.split())
    watching = subprocess.Popen([sys.executable, "-m", "lid_dask.cli", "status", "after", "--db", db, "--watch", "0.5"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)
    watching.send_signal(signal.SIGINT)
    out, err = watching.communicate(timeout=30)
    assert watching.returncode == 0, err
    assert out.count("redrawn every 0.5 s") >= 2 and out.count("drift (PSI") >= 2 and "Traceback" not in err
    refused = subprocess.run([sys.executable, "-m", "lid_dask.cli", "run", str(noise_clips), "--db", db,
                              "--drift-baseline", "nonesuch"], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "drift_baseline names no run" in refused.stderr



@pytest.mark.slow
def test_figures_stay_equal_to_the_ledger_across_an_orchestrator_killed_on_a_long_lived_scheduler(
        noise_clips, pg_url):
    """`dask scheduler --preload lid_dask.monitor` outlives its orchestrators: a killed one's
    batches still answer afterwards, and only what the ledger accepted is counted."""
    from .conftest import start_long_lived_cluster, stop_processes

    address, processes = start_long_lived_cluster(scheduler_preloads=("lid_dask.monitor",))
    start = "import sys, tests.fault_plugins; from lid_dask.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", start, "run", str(noise_clips), "--name", "restarted", "--db", pg_url,
               "--scheduler", address, "--no-progress", "--batch-files", "4", "--vad", "none",
               "--windows", "first:1x4", "--model", "content-hash?delay=0.3"]
    try:
        first = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:  # read-only: the orchestrator creates the tables
                ledger = Ledger.existing(pg_url)
                if ledger.counts(ledger.get_run("restarted").id)["done"] >= 6:
                    break
            except (LedgerError, LookupError):  # not created yet
                pass
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stderr
        from distributed import Client

        with Client(address) as client:
            recorded = metrics(client)
        run = Run("restarted", pg_url)
        counts = run.ledger.counts(run.info.id)
        assert counts["done"] == FILES
        assert recorded[("lid_dask_files_total", (("outcome", "identified"), ("run", "restarted")))] == FILES
        for language, files, _ in run.ledger.answers(run.info.id):
            assert recorded[("lid_dask_answers_total", (("language", language), ("run", "restarted")))] == files
    finally:
        stop_processes(processes)
