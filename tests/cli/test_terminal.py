"""`lid-dask run` in a real terminal (a pty of 100 x 30), as a person sees it: the progress bar, Ctrl-C
once and twice, the end summary, and the commands it prints, run as printed.

The slow runs use the `content-hash` test backend, installed as a plug-in is: an entry point in a
dist-info folder on PYTHONPATH, which the command and its local cluster's worker processes all see.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pexpect
import pytest

from lid_dask.languages import display_name
from lid_dask.runs import Run

from ..conftest import ROOT
from ..conftest import run as sh

ROWS, COLUMNS = 30, 100
LID_DASK = str(Path(sys.executable).parent / "lid-dask")  # the installed command, as a person types it
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BAR = re.compile(r"[━╸╺]\s+(\d+)/(\d+|\?)\s")  # the bar's glyphs, then files done / files in the run
NOISE = ("Traceback", "CancelledError", "KeyboardInterrupt", "Warning", "WARNING", "distributed.")


def install_test_plugins(folder: Path) -> str:
    """The test backends installed in `folder` as a plug-in package is (its entry points); returns
    the PYTHONPATH on which a command and its local cluster's workers find them."""
    info = folder / "lid_dask_test_plugins-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lid-dask-test-plugins\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[lid_dask.models]\ncontent-hash = tests.fault_plugins:ContentHash\n")
    return os.pathsep.join([str(folder), str(ROOT)])


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> str:
    return install_test_plugins(tmp_path_factory.mktemp("plugins"))


@pytest.fixture(scope="module")
def copies(tmp_path_factory, samples_dir) -> Path:
    """48 copies of one bundled clip: many files for the slow backend to chew on."""
    folder = tmp_path_factory.mktemp("copies")
    for i in range(48):
        shutil.copy(samples_dir / "de-espeak-de-000.mp3", folder / f"clip{i:02d}.mp3")
    return folder


class Terminal:
    """One command in a pty; everything it wrote, raw (`raw`) and as text (`text`, `flat`)."""

    def __init__(self, args: list[str], cwd: Path, env: dict | None = None):
        environment = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "LID_DASK_DB")}
        environment.update(TERM="xterm-256color", **(env or {}))
        self.log = io.StringIO()
        self.child = pexpect.spawn(args[0], args[1:], cwd=str(cwd), env=environment, dimensions=(ROWS, COLUMNS),
                                   encoding="utf-8", codec_errors="replace", timeout=90)
        self.child.logfile_read = self.log

    @property
    def raw(self) -> str:
        return self.log.getvalue()

    @property
    def text(self) -> str:
        return ESCAPE.sub("", self.raw).replace("\r\n", "\n").replace("\r", "\n")

    @property
    def flat(self) -> str:
        """Whitespace collapsed: rich wraps long lines at the terminal's width."""
        return " ".join(self.text.split())

    def bar(self) -> list[tuple[int, str]]:
        """Every frame of the progress bar so far: (files done, total as shown)."""
        return [(int(done), total) for done, total in BAR.findall(self.text)]

    def wait_for_bar(self, low: int, high: int, timeout: float = 90) -> int:
        """Until the bar shows between `low` and `high` files done; returns that number."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ended = self.child.expect([r"\d+/\d+", pexpect.TIMEOUT, pexpect.EOF], timeout=1) == 2
            done = [n for n, _ in self.bar() if low <= n <= high]
            if done:
                return done[-1]
            if ended:
                break
        raise AssertionError(f"the bar never showed {low}..{high} files done:\n{self.text}")

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match:
        """Until the text on screen (whitespace collapsed) matches `pattern`."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.flat)
            if found or time.monotonic() > deadline:
                break
            if self.child.expect([r".+", pexpect.TIMEOUT, pexpect.EOF], timeout=0.1) == 2:
                found = re.search(pattern, self.flat)
                break
        assert found, f"{pattern!r} never appeared:\n{self.text}"
        return found

    def finish(self, timeout: float = 90) -> int:
        self.child.expect(pexpect.EOF, timeout=timeout)
        self.child.close()
        return self.child.exitstatus

    def kill(self) -> None:
        """The command and its local cluster (one process group), if a test left them running."""
        if self.child.isalive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.child.pid, signal.SIGKILL)
        self.child.close(force=True)


@contextlib.contextmanager
def terminal(*args: str, cwd: Path, env: dict | None = None):
    term = Terminal([LID_DASK, *args], cwd, env)
    try:
        yield term
    finally:
        term.kill()


def table_rows(text: str) -> dict[str, list[str]]:
    """Rows of rich's box tables: first cell -> the other cells."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if line.lstrip().startswith("│") and len(cells) > 1:
            rows[cells[0]] = cells[1:]
    return rows


def starts_a_line(raw: str, needle: str) -> bool:
    """True if `needle` is printed from the left edge: only escape codes since the last CR or LF."""
    at = raw.index(needle)
    start = max(raw.rfind("\r", 0, at), raw.rfind("\n", 0, at)) + 1
    return ESCAPE.sub("", raw[start:at]) == ""


def counts(db: str, name: str) -> dict[str, int]:
    run = Run(name, db)
    try:
        return run.status().counts
    finally:
        run.ledger.engine.dispose()


def test_a_run_shows_its_total_at_once_advances_and_ends_with_what_it_found(samples_dir, tmp_path):
    """The bar's total is there from its first frame and it moves in steps; the end says what the
    files were, what needs review and why, what failed, and prints commands that work as shown."""
    clips = tmp_path / "clips"
    clips.mkdir()
    for sample in samples_dir.iterdir():
        if sample.suffix != ".csv":
            shutil.copy(sample, clips / sample.name)
    (clips / "broken.wav").write_text("not audio at all")
    sh("sox", "-R", "-D", "-n", "-r", "16000", "-c", "1", str(clips / "short.wav"), "synth", "0.3", "sine", "440")
    files = len(list(clips.iterdir()))
    db = f"sqlite:///{tmp_path / 'ledger.db'}"

    started = time.monotonic()
    with terminal("run", str(clips), "--name", "samples", "--db", db, "--workers", "2",
                  "--dashboard-address", "127.0.0.1:0", cwd=tmp_path) as term:
        assert term.finish(timeout=120) == 0, term.text
    print(f"run took {time.monotonic() - started:.1f} s")

    flat = term.flat
    assert f"run samples in {db}: {files} new files, {files} in all" in flat
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/status", flat) and "was taken" not in flat
    frames = term.bar()
    assert frames and {total for _, total in frames} == {str(files)}, frames  # never "0/?"
    done = [n for n, _ in frames]
    assert done == sorted(done) and done[0] == 0 and done[-1] == files, done
    assert len({n for n in done if 0 < n < files}) >= 2, done  # it moved while the run went, not at the end

    run = Run("samples", db)
    summary = run.summary()
    run.ledger.engine.dispose()
    assert f"{summary.answered} files answered" in flat and " of audio" in flat
    rows = table_rows(term.text)
    shown = summary.languages[:10]
    for language, count, _ in shown:
        label = f"{display_name(language)} [{language}]" if language else "no speech / too short"
        assert rows[label][0] == str(count), (label, rows.get(label))
    rest = summary.languages[10:]
    assert rows[f"{len(rest)} other languages"][0] == str(sum(n for _, n, _ in rest))
    reasons = ", ".join(f"{reason} {n}" for reason, n in summary.review_reasons.items())
    assert f"needs review: {summary.needs_review} files ({reasons})" in flat and "too_short 1" in reasons
    assert "failed: corrupt 1" in flat
    assert not any(noise in term.text for noise in NOISE), term.text

    # The commands the summary prints, run as printed (from another folder, as a person may).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for prefix, output in (("results: ", "samples.parquet"), ("list them: ", "review.csv")):
        (line,) = [line.strip() for line in term.text.splitlines() if line.strip().startswith(prefix)]
        command = shlex.split(line.removeprefix(prefix))
        assert command[0] == "lid-dask" and command[-1] == output, command
        out = subprocess.run([LID_DASK, *command[1:]], cwd=elsewhere, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, (line, out.stderr)
    exported = pd.read_parquet(elsewhere / "samples.parquet")
    assert len(exported) == files and (exported.error_kind == "corrupt").sum() == 1
    assert len(pd.read_csv(elsewhere / "review.csv")) == summary.needs_review


def test_ctrl_c_keeps_finished_work_says_how_to_resume_and_the_same_command_resumes(copies, plugin_path,
                                                                                    tmp_path):
    """Ctrl-C: acknowledged at once on a line of its own, the batches in flight finish and are kept,
    the resume command is printed, exit 130, no traceback or Dask warning; the same command then
    resumes where it stopped and finishes."""
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    command = ("run", str(copies), "--name", "stop", "--db", db, "--workers", "2", "--dashboard-address",
               "127.0.0.1:0", "--model", "content-hash?delay=0.5", "--vad", "none", "--windows", "first:1x4")
    env = {"PYTHONPATH": plugin_path}
    with terminal(*command, cwd=tmp_path, env=env) as term:
        shown = term.wait_for_bar(1, 20)
        term.child.sendintr()
        pressed = time.monotonic()
        term.wait_for("stopping", timeout=10)
        acknowledged = time.monotonic() - pressed
        status = term.finish()
    print(f"acknowledged after {acknowledged:.2f} s")
    assert acknowledged < 3, acknowledged
    at = term.raw.index("stopping")
    assert starts_a_line(term.raw, "stopping"), repr(term.raw[at - 200:at + 100])
    assert status == 130, term.text
    flat = term.flat
    in_flight = int(re.search(r"stopping: no new batches; waiting up to 30 s for the (\d+) files in flight "
                              r"\(Ctrl-C again to release them now\)", flat).group(1))
    stopped = re.search(r"stopped: (\d+) files finished this session and are kept; (\d+) in flight went back to "
                        r"pending\. Resume with the same command, or: lid-dask run --name stop --db (\S+)", flat)
    assert stopped and stopped.group(3) == db, flat
    kept, released = int(stopped.group(1)), int(stopped.group(2))
    assert in_flight > 0 and released == 0  # the batches in flight finished within the drain...
    assert kept >= shown + in_flight  # ...and their answers were recorded
    assert counts(db, "stop") == {"pending": 48 - kept, "leased": 0, "done": kept, "failed": 0, "dead": 0}
    assert kept < 48
    assert not any(noise in term.text for noise in NOISE), term.text

    with terminal(*command, cwd=tmp_path, env=env) as again:
        assert again.finish() == 0, again.text
    assert "run stop in" in again.flat and "0 new files, 48 in all" in again.flat
    frames = again.bar()
    assert frames[0] == (kept, "48") and frames[-1] == (48, "48"), frames  # it starts from the work kept
    assert counts(db, "stop")["done"] == 48
    assert "48 files answered" in again.flat and f"results: lid-dask export stop --db {db}" in again.flat


def test_a_second_ctrl_c_releases_the_batches_in_flight_at_once(copies, plugin_path, tmp_path):
    """Asked twice, the run does not wait for its batches: their files go back to pending, the
    finished ones stay done, and it exits (130) long before a batch could have finished, quietly."""
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    # 6 s a file: the first batches (one file each) end after 6 s, the next ones (several files) much later.
    with terminal("run", str(copies), "--name", "release", "--db", db, "--workers", "2", "--dashboard-address",
                  "127.0.0.1:0", "--model", "content-hash?delay=6", "--vad", "none", "--windows", "first:1x4",
                  cwd=tmp_path, env={"PYTHONPATH": plugin_path}) as term:
        term.wait_for_bar(1, 47)
        term.child.sendintr()
        term.wait_for("stopping:", timeout=10)
        time.sleep(0.5)
        term.child.sendintr()
        pressed = time.monotonic()
        releasing = int(term.wait_for(r"stopping now: releasing the (\d+) files in flight", timeout=10).group(1))
        status = term.finish(timeout=60)
        ended = time.monotonic() - pressed
    print(f"ended {ended:.1f} s after the second Ctrl-C")
    assert status == 130, term.text
    assert ended < 20, ended  # not the 30 s drain, nor the ~24 s the batches in flight still needed
    stopped = re.search(r"stopped: (\d+) files finished this session and are kept; (\d+) in flight went back to "
                        r"pending", term.flat)
    kept, released = int(stopped.group(1)), int(stopped.group(2))
    assert releasing > 0 and released == releasing, term.flat
    assert kept >= 1 and counts(db, "release") == {"pending": 48 - kept, "leased": 0, "done": kept, "failed": 0,
                                                   "dead": 0}
    assert "Resume with the same command" in term.flat
    assert not any(noise in term.text for noise in NOISE), term.text
