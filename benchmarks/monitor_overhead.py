"""What lid_dask.monitor costs the scheduler: memory and event-loop time per 10,000 results.

    python -m benchmarks.monitor_overhead [--files 50000] [--pairs 3] [--batch-files 32]
        [--db postgresql|sqlite] [--pg postgresql+psycopg://postgres@127.0.0.1:5432] [--workers 2]
        [--warmup-files 2000] [--profile] [--no-wait] [--load-wait 120] [--tag TAG] [--out benchmarks/results]

A long-lived ``dask scheduler`` and ``dask worker`` processes on loopback, started as
``cluster/`` deploys them (workers: ``--preload lid_dask.worker``, nanny ``lid_dask.nanny``), the
scheduler once with ``--preload lid_dask.monitor`` ("monitor") and once without ("plain"). The
orchestrator is this process: ``Run.create(..., models="null")`` over a manifest of ``--files``
URIs that are never opened (the ``null`` backend answers ``und`` without audio, as in
``bench_orchestration``), then ``run.execute(Client(address))``. The monitor variant gets the
whole path: one results event per batch (the plugin's ``log_event``: event trimming, worker
fingerprints) and, after each recorded batch, the orchestrator's ``_report`` (a `summary` of the
batch, then a blocking ``lid_dask_record`` call the scheduler adds to its `RunFigures`).

Each variant gets a fresh cluster and a fresh ledger; a warm-up run of ``--warmup-files`` on the
same cluster is not counted (imports, the worker's model cache, the scheduler's code paths). The
two variants run interleaved (plain, monitor; monitor, plain; ...) for ``--pairs`` pairs.
Measured for the counted run, per 10,000 results:

- the scheduler process's RSS (psutil, sampled every 0.2 s): its growth over the first and over the
  last 10,000 results of the run (it is not linear: Dask's own bounded logs fill up, then it levels
  off), and after the run; and what the scheduler still holds of lid-dask's events (count and
  pickled size, read on the scheduler after the run): the monitor keeps the last 100 of each
  lid-dask topic, Dask alone the last ``distributed.admin.low-level-log-length`` (1000 in
  distributed 2026.7.1; each results event holds a batch of answers);
- the scheduler process's CPU time (user + system), that of its main thread, where its event loop
  runs, and the CPU time beyond its idle rate (measured over 5 s before the run, times the run's
  wall time: heartbeats and periodic callbacks cost a longer run more, whatever it does); and from
  its own /metrics the event loop's ticks (``dask_scheduler_tick_count_total``: one
  every 20 ms while the loop is free) and the longest tick (``dask_scheduler_tick_duration_maximum_seconds``);
- the run's wall time and files/s (what a user sees), and the orchestrator's cost of ``_report``
  per batch (`summary` and the round trip apart).

After every run the ledger must say done == files, and with the monitor its figures (``lid_dask_files_total``
on /metrics) must count every file. ``--profile`` adds one run per variant with cProfile on the
scheduler's event loop (started and stopped with ``run_on_scheduler``) and prints its top functions.

Wall time on a shared 2-core machine moves with other jobs (the orchestrator thread is the limit of a
null-backend run, so anything that delays it shows); CPU seconds move much less. Prints a table and
writes monitor_overhead[_TAG].json and .txt under ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from benchmarks.common import RESULTS, ROOT, code_label, fresh_database, machine_info, wait_for_quiet_machine

PER = 10_000  # figures are per this many results
IDLE_SECONDS = 5.0  # the scheduler's idle CPU is measured over this long before the run
VARIANTS = ("plain", "monitor")
TOPICS = ("lid-dask-results", "lid-dask-fingerprint")


# -- the cluster ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(monitor: bool, workers: int, log_dir: Path) -> tuple[str, int, list[subprocess.Popen]]:
    """`dask scheduler` (with ``--preload lid_dask.monitor`` when `monitor`) and `dask worker`s as
    the deployment runs them; returns (address, dashboard port, processes)."""
    port, dashboard = free_port(), free_port()
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    bin_dir = Path(sys.executable).parent
    name = "monitor" if monitor else "plain"

    def start(args: list[str], log: str) -> subprocess.Popen:
        with open(log_dir / log, "w") as output:
            return subprocess.Popen([str(bin_dir / "dask"), *args], cwd=ROOT, env=env, start_new_session=True,
                                    stdout=output, stderr=subprocess.STDOUT)

    address = f"tcp://127.0.0.1:{port}"
    processes = [start(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address",
                        f"127.0.0.1:{dashboard}", "--no-jupyter", *(["--preload", "lid_dask.monitor"] if monitor else [])],
                       f"scheduler-{name}.log")]
    for i in range(workers):
        processes.append(start(["worker", address, "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1",
                                "--name", f"worker-{i}", "--no-dashboard", "--preload-nanny", "lid_dask.nanny",
                                "--preload", "lid_dask.worker"], f"worker-{name}-{i}.log"))
    return address, dashboard, processes


def stop_cluster(processes: list[subprocess.Popen]) -> None:
    for process in reversed(processes):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def scrape(dashboard: int) -> dict:
    """The scheduler's /metrics: tick count, the longest tick since the last scrape (reset by this
    scrape), and lid-dask's file counts by run."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{dashboard}/metrics", timeout=30).read().decode()
    out: dict = {"lid_dask_files": {}}
    for line in text.splitlines():
        if line.startswith("dask_scheduler_tick_count_total "):
            out["ticks"] = float(line.split()[-1])
        elif line.startswith("dask_scheduler_tick_duration_maximum_seconds "):
            out["tick_max_s"] = float(line.split()[-1])
        elif line.startswith("lid_dask_files_total{"):
            run = re.search(r'run="([^"]*)"', line).group(1)
            out["lid_dask_files"][run] = out["lid_dask_files"].get(run, 0) + float(line.split()[-1])
    return out


def scheduler_events(dask_scheduler=None) -> dict:
    """Runs on the scheduler: what it holds of lid-dask's events, and whether the monitor is there."""
    import pickle as _pickle

    import lid_dask

    out = {"monitor_plugin": "lid-dask-monitor" in dask_scheduler.plugins, "lid_dask_file": lid_dask.__file__}
    for name, topic in dask_scheduler._broker._topics.items():
        if name.startswith("lid-dask"):
            events = list(topic.events)
            out[name] = {"kept": len(events), "published": topic.count, "maxlen": topic.events.maxlen,
                         "pickled_bytes": len(_pickle.dumps(events, protocol=5))}
    # Each client's stream to it logs its last sends (distributed's BatchedSend.recent_message_log),
    # and those forwarded every results event to the orchestrator that subscribed.
    held, maxlen = 0, None
    for stream in dask_scheduler.client_comms.values():
        recent = getattr(stream, "recent_message_log", None) or ()
        maxlen = getattr(recent, "maxlen", maxlen)
        held += sum(1 for payload in recent if isinstance(payload, list) for message in payload
                    if isinstance(message, dict) and message.get("topic") == "lid-dask-results")
    out["client_stream_log"] = {"results_events": held, "maxlen": maxlen}
    return out


def profile_start(dask_scheduler=None) -> None:
    """Runs on the scheduler's event loop: profile that thread until `profile_stop`."""
    import cProfile

    dask_scheduler._bench_profiler = profiler = cProfile.Profile()
    profiler.enable()


def profile_stop(dask_scheduler=None) -> str:
    import io as _io
    import pstats

    profiler = dask_scheduler._bench_profiler
    profiler.disable()
    stream = _io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(r"lid_dask|broker|log_event|handle_stream|handle_comm", 25)
    return stream.getvalue()


# -- measuring ----------------------------------------------------------------------------------

class Sampler(threading.Thread):
    """RSS of a process every `interval` s, in a thread of this process: the peak and (time, RSS)."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = self.process.memory_info().rss
        self.samples: list[tuple[float, int]] = [(time.perf_counter(), self.peak)]
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            with contextlib.suppress(Exception):
                rss = self.process.memory_info().rss
                self.samples.append((time.perf_counter(), rss))
                self.peak = max(self.peak, rss)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def cpu_seconds(process) -> float:
    t = process.cpu_times()
    return t.user + t.system


def loop_thread_cpu_seconds(process) -> float:
    """CPU time of the process's main thread: a `dask scheduler`'s event loop runs there."""
    for thread in process.threads():
        if thread.id == process.pid:
            return thread.user_time + thread.system_time
    return math.nan


def rss_by_results(samples: list[tuple[float, int]], recorded: list[tuple[float, int]], files: int) -> list[dict]:
    """The scheduler's RSS when the run had recorded 0, PER, 2 PER, ... and all `files` results:
    the first sample taken after the orchestrator recorded that many (`recorded`: (time, total))."""
    marks = [*range(0, files, PER), files]
    out = []
    for mark in marks:
        when = next((t for t, done in recorded if done >= mark), None) if mark else samples[0][0]
        if when is None:
            continue
        rss = next((r for t, r in samples if t >= when), samples[-1][1])
        out.append({"results": mark, "rss_mib": rss / 2**20})
    return out


class Timers:
    """Total wall time and calls of wrapped functions (the orchestrator side of the monitor)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._patched: list[tuple[object, str, object]] = []
        self.recorded: list[tuple[float, int]] = []  # (time, results recorded so far)

    def wrap(self, owner, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)
        timers = self

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timers.seconds[label] = timers.seconds.get(label, 0.0) + time.perf_counter() - start
                timers.calls[label] = timers.calls.get(label, 0) + 1

        setattr(owner, attribute, timed)
        self._patched.append((owner, attribute, original))

    def count_recorded(self, owner) -> None:
        """Note (time, total) after each `Orchestrator._record_outcomes(outcomes)`."""
        original = owner._record_outcomes
        timers = self

        def counted(orchestrator, outcomes, *args, **kwargs):
            try:
                return original(orchestrator, outcomes, *args, **kwargs)
            finally:
                total = (timers.recorded[-1][1] if timers.recorded else 0) + len(outcomes)
                timers.recorded.append((time.perf_counter(), total))

        owner._record_outcomes = counted
        self._patched.append((owner, "_record_outcomes", original))

    def restore(self) -> None:
        for owner, attribute, original in reversed(self._patched):
            setattr(owner, attribute, original)
        self._patched.clear()


def one_run(variant: str, files: int, warmup: int, batch: int, workers: int, db: str, pg: str, log_dir: Path,
            profile: bool = False) -> dict:
    import psutil
    from distributed import Client

    from lid_dask import orchestrator as orch
    from lid_dask.ledger import schema
    from lid_dask.runs import Run

    monitor = variant == "monitor"
    out: dict = {"variant": variant, "files": files, "batch_files": batch, "db": db, "profiled": profile,
                 "load_avg_before": round(os.getloadavg()[0], 2)}
    address, dashboard, processes = start_cluster(monitor, workers, log_dir)
    try:
        with Client(address, timeout=60) as client, fresh_database(db, pg, "monitor") as url, \
                tempfile.TemporaryDirectory() as folder:
            client.wait_for_workers(workers, timeout=120)
            scheduler = psutil.Process(processes[0].pid)

            def create(name: str, n: int) -> Run:
                manifest = Path(folder) / f"{name}.csv"
                manifest.write_text("uri\n" + "".join(f"s3://bench/{name}-{i:07d}.wav\n" for i in range(n)))
                return Run.create(name, [str(manifest)], db=url, models="null", batch_files=batch,
                                  allowed_roots=["s3://bench"])

            warm = create("warmup", warmup)
            warm.execute(client, progress=False)
            run = create("bench", files)
            time.sleep(1.0)  # let the warm-up's last messages settle
            # The scheduler's CPU while idle (heartbeats, periodic callbacks): a longer run costs more
            # of it whatever it does, so the work of the results is also given without it.
            idle_start, idle_t0 = cpu_seconds(scheduler), time.perf_counter()
            time.sleep(IDLE_SECONDS)
            idle_cpu_per_s = (cpu_seconds(scheduler) - idle_start) / (time.perf_counter() - idle_t0)
            before, scraped_before = scrape(dashboard), time.perf_counter()
            rss_before = scheduler.memory_info().rss
            cpu_before, loop_before = cpu_seconds(scheduler), loop_thread_cpu_seconds(scheduler)
            me_before = cpu_seconds(psutil.Process())
            sampler = Sampler(scheduler.pid)
            timers = Timers()
            timers.wrap(orch.Orchestrator, "_report", "_report")
            timers.wrap(orch, "summary", "summary")
            timers.count_recorded(orch.Orchestrator)
            if profile:
                client.run_on_scheduler(profile_start)
            sampler.start()
            t0 = time.perf_counter()
            try:
                progress = run.execute(client, progress=False)
            finally:
                wall = time.perf_counter() - t0
                timers.restore()
            cpu_after, loop_after = cpu_seconds(scheduler), loop_thread_cpu_seconds(scheduler)
            me_after = cpu_seconds(psutil.Process())
            rss_end = scheduler.memory_info().rss
            if profile:
                out["scheduler_profile"] = client.run_on_scheduler(profile_stop)
            time.sleep(2.0)
            peak = sampler.stop()
            rss_after = scheduler.memory_info().rss
            after, scraped_after = scrape(dashboard), time.perf_counter()
            counts = run.ledger.counts(run.info.id)
            out.update(
                wall_s=wall, files_per_s=files / wall,
                scheduler_cpu_s=cpu_after - cpu_before, scheduler_loop_cpu_s=loop_after - loop_before,
                orchestrator_cpu_s=me_after - me_before, scheduler_idle_cpu_per_s=idle_cpu_per_s,
                scheduler_busy_cpu_s=cpu_after - cpu_before - idle_cpu_per_s * wall,
                rss_before_mib=rss_before / 2**20, rss_end_mib=rss_end / 2**20, rss_after_mib=rss_after / 2**20,
                rss_peak_mib=peak / 2**20, rss_growth_mib=(rss_after - rss_before) / 2**20,
                rss_peak_growth_mib=(peak - rss_before) / 2**20,
                ticks=after["ticks"] - before["ticks"], tick_max_s=after["tick_max_s"],
                ticks_per_s=(after["ticks"] - before["ticks"]) / (scraped_after - scraped_before),
                done=counts.get(schema.DONE, 0), done_this_session=progress.done_this_session,
                monitor_counted=after["lid_dask_files"].get("bench"),
                report_s=timers.seconds.get("_report", 0.0), report_calls=timers.calls.get("_report", 0),
                summary_s=timers.seconds.get("summary", 0.0),
                rss_by_results=rss_by_results(sampler.samples, timers.recorded, files),
                events=client.run_on_scheduler(scheduler_events),
                load_avg_after=round(os.getloadavg()[0], 2))
            run.ledger.engine.dispose()
            warm.ledger.engine.dispose()
    finally:
        stop_cluster(processes)
    log = (log_dir / f"scheduler-{variant}.log").read_text(errors="replace")
    out["scheduler_log_plugin_failures"] = log.count("Plugin failed with exception")
    problems = []
    if out["done"] != files:
        problems.append(f"done = {out['done']}, expected {files}")
    if monitor and out["monitor_counted"] != files:
        problems.append(f"the monitor counted {out['monitor_counted']} files, expected {files}")
    if Path(out["events"]["lid_dask_file"]).resolve().parents[1] != ROOT:
        problems.append(f"the scheduler ran lid_dask from {out['events']['lid_dask_file']}, not from {ROOT}")
    if monitor != out["events"]["monitor_plugin"]:
        problems.append("the scheduler's plugins are not the variant's")
    if monitor and out["report_calls"] == 0:
        problems.append("the orchestrator did not report to the monitor")
    out["problems"] = problems
    per = PER / files
    marks = {m["results"]: m["rss_mib"] for m in out["rss_by_results"]}
    out["per_10k"] = {"scheduler_cpu_s": out["scheduler_cpu_s"] * per, "wall_s": wall * per,
                      "scheduler_loop_cpu_s": out["scheduler_loop_cpu_s"] * per,
                      "scheduler_busy_cpu_s": out["scheduler_busy_cpu_s"] * per,
                      "orchestrator_cpu_s": out["orchestrator_cpu_s"] * per,
                      # RSS is not linear in the results: Dask's own logs fill up, then it levels off
                      "rss_first_10k_mib": marks.get(min(PER, files), math.nan) - marks.get(0, math.nan),
                      "rss_last_10k_mib": marks.get(files, math.nan) - marks.get(max(0, files - PER), math.nan)}
    out["ms_per_batch"] = {"_report": 1000 * out["report_s"] / max(1, out["report_calls"]),
                           "summary": 1000 * out["summary_s"] / max(1, out["report_calls"])}
    return out


# -- figures --------------------------------------------------------------------------------------

def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def summarise(rows: list[dict]) -> dict:
    counted = [r for r in rows if not r["profiled"]]
    by = {v: [r for r in counted if r["variant"] == v] for v in VARIANTS}
    keys = {"wall_s": lambda r: r["per_10k"]["wall_s"], "files_per_s": lambda r: r["files_per_s"],
            "scheduler_cpu_s": lambda r: r["per_10k"]["scheduler_cpu_s"],
            "scheduler_loop_cpu_s": lambda r: r["per_10k"]["scheduler_loop_cpu_s"],
            "scheduler_busy_cpu_s": lambda r: r["per_10k"]["scheduler_busy_cpu_s"],
            "scheduler_idle_cpu_per_s": lambda r: r["scheduler_idle_cpu_per_s"],
            "orchestrator_cpu_s": lambda r: r["per_10k"]["orchestrator_cpu_s"],
            "rss_first_10k_mib": lambda r: r["per_10k"]["rss_first_10k_mib"],
            "rss_last_10k_mib": lambda r: r["per_10k"]["rss_last_10k_mib"],
            "rss_growth_mib": lambda r: r["rss_growth_mib"],
            "rss_after_mib": lambda r: r["rss_after_mib"],
            "ticks_per_s": lambda r: r["ticks_per_s"], "tick_max_s": lambda r: r["tick_max_s"]}
    out: dict = {"per_10k_results": {v: {k: spread([f(r) for r in by[v]]) for k, f in keys.items()}
                                     for v in VARIANTS if by[v]}}
    pairs = list(zip(by["plain"], by["monitor"]))
    if pairs:
        ratios = {key: [m[key] / p[key] for p, m in pairs]
                  for key in ("wall_s", "scheduler_cpu_s", "scheduler_loop_cpu_s", "scheduler_busy_cpu_s")}
        out["ratio_monitor_over_plain"] = {k: spread(v) for k, v in ratios.items()}
        out["added_per_10k_results"] = {
            **{key: spread([(m[key] - p[key]) * PER / m["files"] for p, m in pairs])
               for key in ("scheduler_cpu_s", "scheduler_loop_cpu_s", "scheduler_busy_cpu_s")},
            "scheduler_rss_last_10k_mib": spread([m["per_10k"]["rss_last_10k_mib"] - p["per_10k"]["rss_last_10k_mib"]
                                                  for p, m in pairs]),
            "scheduler_rss_after_run_mib": spread([m["rss_after_mib"] - p["rss_after_mib"] for p, m in pairs]),
            "wall_s": spread([m["per_10k"]["wall_s"] - p["per_10k"]["wall_s"] for p, m in pairs])}
    monitored = by["monitor"]
    if monitored:
        out["orchestrator_report_ms_per_batch"] = spread([r["ms_per_batch"]["_report"] for r in monitored])
        out["orchestrator_summary_ms_per_batch"] = spread([r["ms_per_batch"]["summary"] for r in monitored])
        out["orchestrator_report_share_of_wall"] = spread([r["report_s"] / r["wall_s"] for r in monitored])
    return out


def fmt(s: dict, digits: int = 3) -> str:
    return f"{s['median']:.{digits}g} [{s['min']:.{digits}g}, {s['max']:.{digits}g}]"


def report(rows: list[dict], summary: dict, meta: dict) -> str:
    lines = [f"lid_dask.monitor overhead on the scheduler: null backend, {meta['files']:,} files per run, batch "
             f"{meta['batch_files']}, {meta['workers']} workers x 1 thread, {meta['db']} ledger; lid_dask {meta['code']}",
             f"{meta['machine']['date']} | {meta['machine']['cpu']} | {meta['machine']['cores']} cores | load at start "
             f"{meta['machine']['load_avg_at_start']}", "",
             "runs, in order:",
             f"{'variant':<8} {'wall s':>7} {'files/s':>8} {'sched CPU s':>11} {'RSS before/peak/after MiB':>26} "
             f"{'ticks/s':>7} {'max tick s':>10} {'events kept':>11} {'_report ms/batch':>16} {'load':>9}  check"]
    for r in rows:
        kept = r["events"].get("lid-dask-results", {}).get("kept", 0)
        report_ms = f"{r['ms_per_batch']['_report']:.2f}" if r["report_calls"] else "-"
        lines.append(f"{r['variant'] + ('*' if r['profiled'] else ''):<8} {r['wall_s']:>7.1f} {r['files_per_s']:>8,.0f} "
                     f"{r['scheduler_cpu_s']:>11.2f} {r['rss_before_mib']:>8.0f}/{r['rss_peak_mib']:.0f}/"
                     f"{r['rss_after_mib']:.0f}{'':>5} {r['ticks_per_s']:>7.1f} {r['tick_max_s']:>10.3f} "
                     f"{kept:>11} {report_ms:>16} {r['load_avg_before']:>4}/{r['load_avg_after']:<4}  "
                     f"{'ok' if not r['problems'] else 'FAILED: ' + '; '.join(r['problems'])}")
    lines.append(f"scheduler RSS (MiB) after 0, {PER:,}, {2 * PER:,}, ... results:")
    for r in rows:
        lines.append(f"  {r['variant'] + ('*' if r['profiled'] else ''):<8} "
                     + " ".join(f"{m['rss_mib']:.0f}" for m in r["rss_by_results"]))
    if any(r["profiled"] for r in rows):
        lines.append("(* profiled: cProfile on the scheduler's event loop; not counted below)")
    lines += ["", f"per {PER:,} results, median [min, max] over {meta['pairs']} interleaved pair(s):"]
    per = summary["per_10k_results"]
    for label, key, digits in (("wall time, s", "wall_s", 3), ("files/s (whole run)", "files_per_s", 4),
                               ("scheduler CPU, s", "scheduler_cpu_s", 3),
                               ("  of which its event-loop thread, s", "scheduler_loop_cpu_s", 3),
                               ("  beyond its idle rate, s", "scheduler_busy_cpu_s", 3),
                               ("scheduler idle CPU, s per s", "scheduler_idle_cpu_per_s", 3),
                               ("orchestrator CPU, s", "orchestrator_cpu_s", 3),
                               ("scheduler RSS growth, first 10k, MiB", "rss_first_10k_mib", 3),
                               ("scheduler RSS growth, last 10k, MiB", "rss_last_10k_mib", 3),
                               (f"scheduler RSS growth, all {meta['files']:,}, MiB", "rss_growth_mib", 3),
                               ("scheduler RSS after the run, MiB", "rss_after_mib", 4),
                               ("event-loop ticks per s (50 when free)", "ticks_per_s", 3),
                               ("longest tick, s", "tick_max_s", 3)):
        lines.append(f"  {label:<40} " + "   ".join(f"{v} {fmt(per[v][key], digits)}" for v in VARIANTS if v in per))
    if "ratio_monitor_over_plain" in summary:
        ratio = summary["ratio_monitor_over_plain"]
        added = summary["added_per_10k_results"]
        lines += ["", "monitor / plain, per pair, median [min, max]:",
                  f"  wall time x{fmt(ratio['wall_s'], 4)}   scheduler CPU x{fmt(ratio['scheduler_cpu_s'], 4)}   "
                  f"its event-loop thread x{fmt(ratio['scheduler_loop_cpu_s'], 4)}   beyond idle "
                  f"x{fmt(ratio['scheduler_busy_cpu_s'], 4)}",
                  f"added per {PER:,} results: scheduler CPU {fmt(added['scheduler_cpu_s'])} s (event-loop thread "
                  f"{fmt(added['scheduler_loop_cpu_s'])} s; beyond idle {fmt(added['scheduler_busy_cpu_s'])} s), wall "
                  f"{fmt(added['wall_s'])} s, scheduler RSS in the last {PER:,} {fmt(added['scheduler_rss_last_10k_mib'])} MiB",
                  f"scheduler RSS after {meta['files']:,} results, monitor minus plain: "
                  f"{fmt(added['scheduler_rss_after_run_mib'])} MiB"]
    if "orchestrator_report_ms_per_batch" in summary:
        share = summary["orchestrator_report_share_of_wall"]
        lines.append(f"orchestrator _report: {fmt(summary['orchestrator_report_ms_per_batch'])} ms a batch (of which "
                     f"summary() {fmt(summary['orchestrator_summary_ms_per_batch'])} ms), "
                     f"{fmt({k: 100 * share[k] for k in ('median', 'min', 'max')})} % of the run's wall time")
    events = [(r["variant"], r["events"]) for r in rows if not r["profiled"]]
    for variant in VARIANTS:
        kept = [e for v, e in events if v == variant and "lid-dask-results" in e]
        if kept:
            e = kept[-1]["lid-dask-results"]
            stream = kept[-1].get("client_stream_log", {})
            lines.append(f"results events held by the {variant} scheduler after the last run: {e['kept']} of "
                         f"{e['published']} published (deque maxlen {e['maxlen']}), {e['pickled_bytes'] / 2**20:.1f} MiB "
                         f"pickled; also in the orchestrator's client stream log: {stream.get('results_events')} "
                         f"(maxlen {stream.get('maxlen')} sends)")
    failures = sum(r["scheduler_log_plugin_failures"] for r in rows)
    if failures:
        lines.append(f"WARNING: the scheduler logs say 'Plugin failed with exception' {failures} times")
    for r in rows:
        if r.get("scheduler_profile"):
            lines += ["", f"scheduler profile ({r['variant']}, {r['files']:,} files):", r["scheduler_profile"]]
    lines += ["", f"rerun: {meta['machine']['command']}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.monitor_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=50_000, help="files of each counted run")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved (plain, monitor) pairs")
    parser.add_argument("--batch-files", type=int, default=32, help="files a batch (the run setting; 32 is the default)")
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--pg", default=os.environ.get("LID_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432"),
                        help="PostgreSQL server URL without a database name")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warmup-files", type=int, default=2000)
    parser.add_argument("--profile", action="store_true", help="add a run per variant with cProfile on the scheduler")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    parser.add_argument("--load-wait", type=float, default=120.0,
                        help="before each run, wait up to this many seconds for the load average to fall below 1.5")
    parser.add_argument("--tag", default="", help="names the result files monitor_overhead_TAG.{json,txt}")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for monitor_overhead[_TAG].{json,txt}")
    args = parser.parse_args()

    import logging

    logging.getLogger("distributed").setLevel(logging.ERROR)
    if not args.no_wait:
        wait_for_quiet_machine(load_wait=args.load_wait)
    machine = machine_info()
    meta = {"files": args.files, "pairs": args.pairs, "batch_files": args.batch_files, "db": args.db,
            "workers": args.workers, "warmup_files": args.warmup_files, "machine": machine,
            "code": f"{code_label()} (lid_dask/ sha {machine['code']['lid_dask_sha256']})",
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(f"monitor overhead (lid_dask {meta['code']}): {args.files:,} files per run, batch {args.batch_files}, "
          f"{args.pairs} pairs, {args.db}", flush=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="lid-bench-monitor-") as logs:
        for pair in range(args.pairs):
            order = VARIANTS if pair % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                if not args.no_wait:
                    wait_for_quiet_machine(load_wait=args.load_wait)
                r = one_run(variant, args.files, args.warmup_files, args.batch_files, args.workers, args.db,
                            args.pg, Path(logs))
                r["pair"] = pair
                rows.append(r)
                print(f"  pair {pair + 1} {variant:<7}: {r['wall_s']:.1f} s, {r['files_per_s']:,.0f} files/s, "
                      f"scheduler CPU {r['scheduler_cpu_s']:.2f} s, RSS {r['rss_before_mib']:.0f} -> "
                      f"{r['rss_after_mib']:.0f} MiB (peak {r['rss_peak_mib']:.0f}), load {r['load_avg_before']}"
                      + ("" if not r["problems"] else "  FAILED: " + "; ".join(r["problems"])), flush=True)
        if args.profile:
            for variant in VARIANTS:
                r = one_run(variant, args.files, args.warmup_files, args.batch_files, args.workers, args.db,
                            args.pg, Path(logs), profile=True)
                rows.append(r)
    summary = summarise(rows)
    text = report(rows, summary, meta)
    print()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "monitor_overhead" + (f"_{args.tag}" if args.tag else "")
    (args.out / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "runs": rows}, indent=2, default=str) + "\n")
    (args.out / f"{stem}.txt").write_text(text)
    print(f"wrote {args.out / stem}.json and {stem}.txt")
    if any(r["problems"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
