"""The Dask dashboard of a running `lid-dask run`, opened in headless chromium as a person opens
the address the command prints: the Bokeh page renders, shows the run's batches, and needs nothing
but the scheduler it comes from."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from .cli.test_terminal import LID_DASK, install_test_plugins

# The five plots of /status (distributed's templates/status.html), each a Bokeh root in its own div.
PLOTS = ("status-cluster-memory", "status-workers-memory", "status-processing", "status-tasks", "status-progress")

# Strings in the page's Bokeh data sources: what its plots draw (as canvas, not DOM text).
DRAWN_STRINGS = """() => {
    const found = [];
    for (const doc of (window.Bokeh ? window.Bokeh.documents : [])) {
        for (const model of doc.all_models) {
            const data = model.data;
            if (!data || typeof data !== "object") continue;
            for (const column of (data instanceof Map ? data.values() : Object.values(data))) {
                for (const value of Array.from(column || [])) {
                    if (typeof value === "string") found.push(value);
                }
            }
        }
    }
    return found;
}"""


@pytest.fixture
def running(tmp_path, samples_dir):
    """`lid-dask run` over 48 files at a second each on two local workers (about half a minute),
    its output in a file; yields (process, dashboard address); stopped with Ctrl-C."""
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(48):
        shutil.copy(samples_dir / "en-festival-kal_diphone-000.opus", clips / f"clip{i:02d}.opus")
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    log = tmp_path / "run.log"
    env = {**os.environ, "PYTHONPATH": install_test_plugins(tmp_path)}
    with open(log, "w") as output:
        process = subprocess.Popen(
            [LID_DASK, "run", str(clips), "--name", "watched", "--db", db, "--workers", "2", "--no-progress",
             "--dashboard-address", "127.0.0.1:0", "--model", "content-hash?delay=1", "--vad", "none",
             "--windows", "first:1x4"], cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r"dashboard: (http://\S+/status)", log.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield process, found.group(1)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        print(log.read_text())


def test_the_dashboard_of_a_running_run_renders_its_batches(running, browser, tmp_path):
    """Bokeh draws every plot of /status, the page's data name the run's batches (lid-batch-*)
    while the run goes, every request stays on the scheduler, and a screenshot shows coloured
    plots, not a blank or an error page."""
    process, address = running
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    started = time.monotonic()
    response = page.goto(address, timeout=60_000)
    assert response.ok, response.status
    for plot in PLOTS:  # playwright's selectors reach into Bokeh's shadow roots
        canvas = page.locator(f"#{plot} canvas").first
        canvas.wait_for(timeout=60_000)
        box = canvas.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50, (plot, box)
    page.wait_for_function(f"""() => {{
        const drawn = ({DRAWN_STRINGS})();
        return drawn.includes("lid-batch") && drawn.some(s => s.startsWith("lid-batch-"));
    }}""", timeout=60_000)
    print(f"rendered with the run's batches {time.monotonic() - started:.1f} s after opening")
    assert process.poll() is None  # the run was still going when the page showed it
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot))
    context.close()

    assert all(urlparse(url).hostname == "127.0.0.1" for url in requests), requests
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.size == (1400, 900)
        pixels = np.asarray(image.convert("RGB")).astype(int)
    coloured = ((pixels.max(axis=2) - pixels.min(axis=2)) > 60).mean()
    print(f"coloured pixels: {coloured:.1%}")
    assert coloured > 0.02  # the task stream's and processing plots' bars; an idle /status has under 0.1%
