"""Orchestration overhead: what lid-dask itself costs per file, with the models taken out.

    python -m benchmarks.bench_orchestration [--files 100000] [--batch-sizes 256,1000,2000]
        [--dbs sqlite,postgresql] [--pg postgresql+psycopg://postgres@127.0.0.1:5432]
        [--workers 2] [--profile]

The ``null`` model backend answers ``und`` without opening the files, so the URIs need not exist
("s3://bench/clip-0000001.wav"); everything else is the real code path: ``Run.create`` over a
manifest CSV listing them (what one does with 100k object URLs: a list of 100k URLs would make
``lid_dask.sources`` ask the object store about each one, see DISTRIBUTED.md; a manifest is read
without touching storage, so nothing leaves this machine), then ``run.execute(client, progress=False)`` on a
LocalCluster made by ``lid_dask.cluster.connect`` (worker processes with one thread each and the
lid-dask preload): claim with leases, ``client.submit`` of batch tasks, the worker task, results
travelling back as scheduler events, one ``ledger.record`` transaction per batch.

Each (database, batch size) pair gets a fresh database (a temp SQLite file, or a new PostgreSQL
database that is dropped afterwards). One warm-up run on the same cluster is not counted. After
every run the ledger is checked: done == files, and no duplicate file, result, prediction or
attempt row.

Where the time goes: the orchestrator thread's wall time is split (exclusive, so nothing counts
twice) between ledger.claim, ledger.record, ledger.counts (the progress refresh after each
batch, from the counter table), other ledger calls, client.submit, decoding the results events, and waiting for events
(idle: the workers or the scheduler are the limit). CPU seconds of the orchestrator process (it
also hosts the LocalCluster scheduler), the worker processes and PostgreSQL are measured with
psutil. ``--profile`` adds one cProfile'd run per database and prints its top functions.

Prints a table and writes benchmarks/results/orchestration.json.
"""

from __future__ import annotations

import argparse
import cProfile
import contextlib
import functools
import io
import json
import os
import platform
import pstats
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.common import RESULTS, code_label, command_line, fresh_database, wait_for_quiet_machine


def verify(ledger, run_id: int, expected: int) -> dict:
    """Counts and duplicate checks straight from the tables."""
    import sqlalchemy as sa

    from lid_dask.ledger import schema as s

    checks = {}
    with ledger.engine.connect() as connection:
        def one(sql):
            return connection.execute(sa.text(sql), {"run": run_id}).one()

        checks["counts"] = ledger.counts(run_id)
        files, uris = one("SELECT count(*), count(DISTINCT uri) FROM files WHERE run_id = :run")
        results, result_ids = one("SELECT count(*), count(DISTINCT r.file_id) FROM results r "
                                  "JOIN files f ON f.id = r.file_id WHERE f.run_id = :run")
        predictions, prediction_keys = one(
            "SELECT count(*), count(DISTINCT p.file_id || '/' || p.model) FROM predictions p "
            "JOIN files f ON f.id = p.file_id WHERE f.run_id = :run")
        attempts, attempt_ids = one("SELECT count(*), count(DISTINCT a.file_id) FROM attempts a "
                                    "JOIN files f ON f.id = a.file_id WHERE f.run_id = :run")
    checks.update(files=files, distinct_uris=uris, results=results, distinct_results=result_ids,
                  predictions=predictions, distinct_predictions=prediction_keys,
                  attempts=attempts, distinct_attempt_files=attempt_ids)
    problems = []
    if checks["counts"][s.DONE] != expected:
        problems.append(f"done = {checks['counts'][s.DONE]}, expected {expected}")
    for total, distinct, what in ((files, uris, "file"), (results, result_ids, "result"),
                                  (predictions, prediction_keys, "prediction")):
        if total != expected or distinct != expected:
            problems.append(f"{what} rows {total} ({distinct} distinct), expected {expected}")
    if attempt_ids != expected:
        problems.append(f"attempts cover {attempt_ids} files, expected {expected}")
    checks["extra_attempts"] = attempts - attempt_ids  # batches a worker loss made Dask rerun
    checks["ok"] = not problems
    checks["problems"] = problems
    return checks


# -- exclusive wall-time accounting in the orchestrator thread ---------------------------------

class Breakdown:
    """Wrap functions so their wall time is counted once, exclusive of wrapped callees."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack = threading.local()
        self._patched: list[tuple[object, str, object]] = []
        self.thread: int | None = None

    def wrap(self, owner, attribute: str, label: str, kind: str = "function") -> None:
        original = owner.__dict__[attribute]
        function = original.__func__ if kind == "classmethod" else original
        breakdown = self

        @functools.wraps(function)
        def timed(*args, **kwargs):
            if threading.get_ident() != breakdown.thread:
                return function(*args, **kwargs)
            stack = breakdown._frames()
            stack.append(0.0)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                children = stack.pop()
                breakdown.seconds[label] += elapsed - children
                breakdown.calls[label] += 1
                if stack:
                    stack[-1] += elapsed

        setattr(owner, attribute, classmethod(timed) if kind == "classmethod" else timed)
        self._patched.append((owner, attribute, original))

    def _frames(self) -> list[float]:
        if not hasattr(self._stack, "frames"):
            self._stack.frames = []
        return self._stack.frames

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()
        self.thread = threading.get_ident()

    def restore(self) -> None:
        for owner, attribute, original in reversed(self._patched):
            setattr(owner, attribute, original)
        self._patched.clear()


def instrument() -> Breakdown:
    from distributed import Client

    from lid_dask import orchestrator as orch
    from lid_dask.ledger import ledger as ledger_module
    from lid_dask.results import FileResult

    b = Breakdown()
    L = ledger_module.Ledger
    b.wrap(L, "claim", "ledger.claim")
    b.wrap(L, "record", "ledger.record")
    b.wrap(L, "counts", "ledger.counts (progress refresh)")
    for name in ("acquire_lock", "extend_leases", "expire_leases", "release", "release_lock", "record_worker",
                 "set_fingerprint", "lock_holder"):
        b.wrap(L, name, "ledger: lock/leases/workers")
    b.wrap(Client, "submit", "client.submit")
    b.wrap(orch.Orchestrator, "_on_results", "events: decode + fingerprint check")
    b.wrap(orch.Orchestrator, "_on_fingerprint", "events: decode + fingerprint check")
    b.wrap(FileResult, "from_dict", "events: decode + fingerprint check", kind="classmethod")
    b.wrap(orch.Orchestrator, "_drain_events", "waiting for events (idle)")
    b.wrap(orch.Orchestrator, "_check_futures", "check futures")
    b.wrap(orch.Orchestrator, "execute", "loop and other")
    return b


# -- CPU accounting across processes -----------------------------------------------------------

def cpu_snapshot(client) -> dict[str, float]:
    import psutil

    me = psutil.Process()
    workers = [p for p in me.children(recursive=True)]
    postgres = [p for p in psutil.process_iter(["name", "username"]) if (p.info["name"] or "").startswith("postgres")]

    def cpu(processes):
        total = 0.0
        for p in processes:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    return {"orchestrator+scheduler": cpu([me]), "workers": cpu(workers), "postgres": cpu(postgres)}


# -- one measurement ----------------------------------------------------------------------------

def measure(client, db_kind: str, pg_base: str, files: int, batch: int, breakdown: Breakdown | None,
            profile: bool = False) -> dict:
    from lid_dask.ledger import Ledger
    from lid_dask.runs import Run

    out: dict = {"db": db_kind, "files": files, "batch_files": batch, "load_avg_before": round(os.getloadavg()[0], 2)}
    with fresh_database(db_kind, pg_base, f"orch{batch}") as url, tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "manifest.csv"
        manifest.write_text("uri\n" + "".join(f"s3://bench/clip-{i:07d}.wav\n" for i in range(files)))
        Ledger(url).engine.dispose()  # schema in place: registration time is registration only
        t0 = time.perf_counter()
        run = Run.create("bench", [str(manifest)], db=url, models="null", batch_files=batch,
                         allowed_roots=["s3://bench"])
        out["register_s"] = time.perf_counter() - t0
        out["register_files_per_s"] = files / out["register_s"]

        before = cpu_snapshot(client)
        if breakdown:
            breakdown.reset()
        profiler = cProfile.Profile() if profile else None
        t0 = time.perf_counter()
        if profiler:
            profiler.enable()
        progress = run.execute(client, progress=False)
        if profiler:
            profiler.disable()
        out["process_s"] = time.perf_counter() - t0
        after = cpu_snapshot(client)
        out["process_files_per_s"] = files / out["process_s"]
        out["load_avg_after"] = round(os.getloadavg()[0], 2)
        out["cpu_s"] = {k: round(after[k] - before[k], 2) for k in before}
        out["done_this_session"] = progress.done_this_session
        if breakdown:
            out["breakdown_s"] = {k: round(v, 3) for k, v in sorted(breakdown.seconds.items(), key=lambda kv: -kv[1])}
            out["breakdown_calls"] = dict(breakdown.calls)
        if profiler:
            out["profile"] = profile_summary(profiler)
        out["verify"] = verify(run.ledger, run.info.id, files)
        run.ledger.engine.dispose()
    return out


def profile_summary(profiler: cProfile.Profile, top: int = 18) -> str:
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("cumulative").print_stats(r"lid_dask|sqlalchemy/engine/base.py.*\(execute\)|"
                                               r"sqlalchemy/sql/compiler.py.*__init__|client.py.*\(submit\)", top)
    text = stream.getvalue()
    return text[text.find("   ncalls"):] if "   ncalls" in text else text


# -- output -------------------------------------------------------------------------------------

def print_row(r: dict) -> None:
    v = r["verify"]
    state = "ok" if v["ok"] else "FAILED: " + "; ".join(v["problems"])
    print(f"{r['db']:<10} batch {r['batch_files']:>5}: register {r['register_files_per_s']:>8,.0f} files/s "
          f"({r['register_s']:.1f} s) | process {r['process_files_per_s']:>6,.0f} files/s ({r['process_s']:.1f} s) "
          f"| check {state}", flush=True)
    if "breakdown_s" in r:
        total = r["process_s"]
        parts = ", ".join(f"{k} {v:.2f} s ({100 * v / total:.0f}%)" for k, v in r["breakdown_s"].items() if v >= 0.005)
        print(f"    orchestrator thread: {parts}")
        calls = r["breakdown_calls"]
        per = []
        for label in ("ledger.claim", "ledger.record", "ledger.counts (progress refresh)", "client.submit"):
            if calls.get(label):
                per.append(f"{label} {1000 * r['breakdown_s'][label] / calls[label]:.1f} ms x {calls[label]}")
        print(f"    per call: {', '.join(per)}")
    print("    CPU ms per file: " + ", ".join(f"{k} {1000 * v / r['files']:.2f}" for k, v in r["cpu_s"].items()) +
          f" (wall {1000 * r['process_s'] / r['files']:.2f} ms/file, {os.cpu_count()} cores; "
          f"load average {r['load_avg_before']} before, {r['load_avg_after']} after)")
    if "profile" in r:
        print("    cProfile (cumulative, orchestrator thread):")
        print("\n".join("      " + line for line in r["profile"].splitlines() if line.strip()))


def markdown(results: list[dict], meta: dict) -> str:
    lines = [f"Orchestration overhead, null model, {meta['files']:,} files, {meta['workers']} worker processes x 1 thread, "
             f"{meta['machine']}", "",
             "| ledger | batch | register files/s | process files/s | claim s | record s | counts s | submit s | "
             "events s | idle s | CPU ms/file orch+sched / workers / postgres | load before/after | check |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in results:
        b = r.get("breakdown_s", {})
        lines.append(
            f"| {r['db']} | {r['batch_files']} | {r['register_files_per_s']:,.0f} | {r['process_files_per_s']:,.0f} | "
            f"{b.get('ledger.claim', 0):.2f} | {b.get('ledger.record', 0):.2f} | "
            f"{b.get('ledger.counts (progress refresh)', 0):.2f} | {b.get('client.submit', 0):.2f} | "
            f"{b.get('events: decode + fingerprint check', 0):.2f} | {b.get('waiting for events (idle)', 0):.2f} | "
            + " / ".join(f"{1000 * r['cpu_s'][k] / r['files']:.2f}" for k in ("orchestrator+scheduler", "workers", "postgres"))
            + f" | {r['load_avg_before']} / {r['load_avg_after']} | {'ok' if r['verify']['ok'] else 'FAILED'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_orchestration", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--batch-sizes", default="256,1000,2000")
    parser.add_argument("--dbs", default="sqlite,postgresql")
    parser.add_argument("--pg", default=os.environ.get("LID_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432"),
                        help="PostgreSQL server URL without a database name")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="add a cProfile'd run per database (largest batch)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for other benchmarks to finish")
    parser.add_argument("--out", type=Path, default=RESULTS / "orchestration.json")
    args = parser.parse_args()

    import logging

    logging.getLogger("distributed").setLevel(logging.ERROR)
    from lid_dask.cluster import connect

    batches = [int(b) for b in args.batch_sizes.split(",")]
    dbs = [d.strip() for d in args.dbs.split(",") if d.strip()]
    if not args.no_wait:
        wait_for_quiet_machine()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    code = code_label()
    print(f"orchestration benchmark (lid_dask {code}): {args.files:,} files, batches {batches}, ledgers {dbs}, "
          f"{args.workers} workers x 1 thread", flush=True)
    client = connect(n_workers=args.workers, threads_per_worker=1, dashboard_address=None)
    results = []
    try:
        # Warm-up: worker imports, the per-worker Identifier cache, the scheduler's code paths.
        measure(client, "sqlite", args.pg, 2_000, 500, None)
        for db in dbs:
            for batch in batches:
                if not args.no_wait:
                    wait_for_quiet_machine()
                breakdown = instrument()
                try:
                    r = measure(client, db, args.pg, args.files, batch, breakdown)
                finally:
                    breakdown.restore()
                print_row(r)
                results.append(r)
            if args.profile:
                r = measure(client, db, args.pg, args.files, max(batches), None, profile=True)
                r["profiled"] = True
                print_row(r)
                results.append(r)
    finally:
        client.close()
        if client.cluster is not None:
            client.cluster.close()
    meta = {"files": args.files, "workers": args.workers, "machine": machine,
            "lid_dask_code": code,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command_line()}
    print()
    print(markdown([r for r in results if not r.get("profiled")], meta))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    if not all(r["verify"]["ok"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
