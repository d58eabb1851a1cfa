"""The ledger at archive scale: claim and status queries on a run of 5,000,000 files.

    python -m benchmarks.bench_ledger_scale [--files 5000000] [--dbs postgresql,sqlite]
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432] [--repeat 20] [--keep]

A fresh database gets the real schema up to revision 0002 (the Alembic migrations), one run, and
`--files` rows bulk-loaded straight into ``files`` (PostgreSQL: ``COPY ... FROM STDIN`` through
psycopg; SQLite: ``executemany`` in one transaction), then ``VACUUM ANALYZE`` (what autovacuum
does on a live ledger). Then the ledger is upgraded to the latest revision as an existing ledger
would be (0003 backfills the per-run state counts from the 5M rows; timed). The mix of states is what a run half-way through looks like:
60 % done (finished over the last 48 h), 30 % pending, 5 % failed (half of them due for a
retry), 3 % dead, 2 % leased, with eight error kinds.

Then, each timed `--repeat` times (median, min, max reported; target < 50 ms):
``ledger.claim(run, owner, 256, 600)`` (leases 256 more files each time), ``ledger.record`` of a
claimed batch of 256 (null-model results; not in the target list, shown for the per-batch cost),
and the status queries ``ledger.counts``, ``ledger.top_errors``, ``ledger.done_since`` and
``ledger.first_finished_since`` (last 10 minutes), and the whole of ``Run.status()`` (what ``lid-dask status`` runs). For every query over
target, or all with ``--explain-all``, the statements it ran are captured and explained
(PostgreSQL: ``EXPLAIN (ANALYZE, BUFFERS)`` inside a rolled-back transaction; SQLite:
``EXPLAIN QUERY PLAN``). Finally the counts, error kinds and recent finishes are checked against
a fresh ``GROUP BY`` / ``count(*)`` over ``files`` (after all those claims and records).

Prints the figures and plans; writes benchmarks/results/ledger_scale.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, code_label, command_line, fresh_database, wait_for_quiet_machine

TARGET_MS = 50.0

MIX = {"done": 0.60, "pending": 0.30, "failed": 0.05, "dead": 0.03, "leased": 0.02}
TRANSIENT = ["network", "timeout", "storage_throttled", "worker_lost"]
PERMANENT = ["corrupt", "unsupported_codec", "too_short_header", "killed_worker"]


# -- synthetic run ------------------------------------------------------------------------------

def synthetic_rows(n: int, run_id: int, now: dt.datetime, seed: int = 0, chunk: int = 200_000):
    """Yield column arrays chunk by chunk: deterministic for a seed."""
    rng = np.random.default_rng(seed)
    states = np.array(list(MIX))
    probabilities = np.array(list(MIX.values()))
    registered = now - dt.timedelta(days=2)
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        ids = np.arange(start, start + size)
        state = states[rng.choice(len(states), size=size, p=probabilities)]
        offset = rng.uniform(0, 1, size)
        kind_index = rng.integers(0, 4, size)
        file_size = rng.integers(200_000, 60_000_000, size)
        yield ids, state, offset, kind_index, file_size, registered


def row_values(ids, state, offset, kind_index, file_size, registered, now):
    """(uri, size, state, due_at, attempts, lease_owner, error_kind, error, updated_at) per file."""
    for i, st, u, k, sz in zip(ids.tolist(), state.tolist(), offset.tolist(), kind_index.tolist(), file_size.tolist()):
        uri = f"s3://archive/podcasts/{i // 1000:05d}/episode-{i:08d}.mp3"
        if st == "pending":
            yield uri, sz, st, registered, 0, None, None, None, registered
        elif st == "done":
            finished = now - dt.timedelta(seconds=u * 48 * 3600)
            yield uri, sz, st, finished, 1 + (i % 20 == 0), None, None, None, finished
        elif st == "failed":
            kind = TRANSIENT[k]
            due = now + dt.timedelta(seconds=(u - 0.5) * 7200)
            yield uri, sz, st, due, 1 + (i % 2), None, kind, f"{kind}: attempt failed (synthetic)", now - dt.timedelta(
                seconds=u * 3600)
        elif st == "dead":
            kind = PERMANENT[k]
            finished = now - dt.timedelta(seconds=u * 48 * 3600)
            yield uri, sz, st, finished, 3, None, kind, f"{kind}: gave up (synthetic)", finished
        else:  # leased: an orchestrator holds them
            yield uri, sz, st, now + dt.timedelta(seconds=u * 600), 1, "bench-host:1:0000", None, None, now


def load_postgresql(url: str, run_id: int, n: int, now: dt.datetime) -> None:
    import psycopg

    def text(value):
        if value is None:
            return "\\N"
        if isinstance(value, dt.datetime):
            return value.isoformat()
        return str(value)

    columns = "run_id, uri, size, state, due_at, attempts, lease_owner, error_kind, error, updated_at"
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        with connection.cursor() as cursor:
            # Indexes are rebuilt once after the load: far faster than maintaining them row by row.
            cursor.execute("ALTER TABLE files DROP CONSTRAINT files_run_uri")
            cursor.execute("DROP INDEX files_claim")
            with cursor.copy(f"COPY files ({columns}) FROM STDIN") as copy:
                for chunk in synthetic_rows(n, run_id, now):
                    buffer = io.StringIO()
                    for row in row_values(*chunk, now):
                        buffer.write(f"{run_id}\t" + "\t".join(map(text, row)) + "\n")
                    copy.write(buffer.getvalue())
            cursor.execute("ALTER TABLE files ADD CONSTRAINT files_run_uri UNIQUE (run_id, uri)")
            cursor.execute("CREATE INDEX files_claim ON files (run_id, state, due_at)")
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE files")


def load_sqlite(path: str, run_id: int, n: int, now: dt.datetime) -> None:
    import sqlite3

    def stamp(value):  # SQLAlchemy's storage format for DateTime on SQLite (UTC, naive)
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")

    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("DROP INDEX files_claim")
    statement = ("INSERT INTO files (run_id, uri, size, state, due_at, attempts, lease_owner, error_kind, error, "
                 "updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)")
    with connection:
        for chunk in synthetic_rows(n, run_id, now):
            connection.executemany(statement, ((run_id, uri, size, state, stamp(due), attempts, owner, kind, error,
                                                stamp(updated))
                                               for uri, size, state, due, attempts, owner, kind, error, updated
                                               in row_values(*chunk, now)))
    connection.execute("CREATE INDEX files_claim ON files (run_id, state, due_at)")
    connection.execute("ANALYZE")
    connection.close()


# -- timing and plans ---------------------------------------------------------------------------

class Capture:
    """The SQL statements a ledger call sends (to explain the slow ones)."""

    def __init__(self, engine):
        import sqlalchemy as sa

        self.engine, self.statements, self.on = engine, [], False
        sa.event.listen(engine, "before_cursor_execute", self._hook)

    def _hook(self, conn, cursor, statement, parameters, context, executemany):
        if self.on:
            self.statements.append((statement, parameters))

    @contextlib.contextmanager
    def __call__(self):
        self.statements, self.on = [], True
        try:
            yield self.statements
        finally:
            self.on = False


def timed(function, repeat: int, budget_s: float = 30.0) -> dict:
    """Median of `repeat` calls; a call slower than budget/repeat stops early (at least 3 calls)."""
    times = []
    began = time.perf_counter()
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(1000 * (time.perf_counter() - start))
        if len(times) >= 3 and time.perf_counter() - began > budget_s:
            break
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "n": len(times)}


def explain(ledger, statements: list, dialect: str) -> str:
    """Plans of captured statements; writes are explained in a transaction that is rolled back."""
    out = []
    raw = ledger.engine.raw_connection()
    try:
        cursor = raw.cursor()
        for statement, parameters in statements:
            if statement.strip().upper().startswith(("BEGIN", "COMMIT", "PRAGMA")):
                continue
            if dialect == "postgresql":
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, parameters)
            else:
                cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            rows = cursor.fetchall()
            first_line = " ".join(statement.split())[:160]
            out.append(f"-- {first_line}{'...' if len(' '.join(statement.split())) > 160 else ''}")
            out += ["   " + " | ".join(str(c) for c in r[-1:]) for r in rows]
        raw.rollback()
    finally:
        raw.close()
    return "\n".join(out)


def exact_figures(ledger, run_id: int, since: dt.datetime) -> dict:
    """Counts by state, error kinds and recent finishes counted from files itself (the slow way)."""
    import sqlalchemy as sa

    with ledger.engine.connect() as connection:
        def rows(sql):
            return connection.execute(sa.text(sql), {"run": run_id, "since": since}).all()

        states = dict(rows("SELECT state, count(*) FROM files WHERE run_id = :run GROUP BY state"))
        errors = dict(rows("SELECT error_kind, count(*) FROM files WHERE run_id = :run "
                           "AND state IN ('failed', 'dead') GROUP BY error_kind"))
        recent = rows("SELECT count(*) FROM files WHERE run_id = :run AND state IN ('done', 'dead') "
                      "AND updated_at >= :since")[0][0]
    return {"counts": {state: states.get(state, 0) for state in ("pending", "leased", "done", "failed", "dead")},
            "top_errors": errors, "done_since": recent}


# -- one database -------------------------------------------------------------------------------

def bench_database(kind: str, args) -> dict:
    from lid_dask.ledger import Ledger, Outcome
    from lid_dask.results import FileResult, ModelVerdict
    from lid_dask.runs import Run

    out: dict = {"db": kind, "files": args.files}
    with fresh_database(kind, args.pg, "scale", keep=args.keep) as url:
        ledger = Ledger(url, migrate=False)
        ledger.migrate("0002")  # the schema before the counter table: the upgrade below backfills it
        run = ledger.create_run("archive", {"identify": {"models": ["null"]}})
        ledger.engine.dispose()
        now = dt.datetime.now(dt.timezone.utc)
        start = time.perf_counter()
        if kind == "postgresql":
            load_postgresql(url, run.id, args.files, now)
        else:
            load_sqlite(url.removeprefix("sqlite:///"), run.id, args.files, now)
        out["load_s"] = time.perf_counter() - start
        out["load_rows_per_s"] = args.files / out["load_s"]
        out["database"] = url if args.keep else "(dropped)"
        ledger.engine.dispose()
        start = time.perf_counter()
        ledger.migrate()
        out["upgrade_s"] = time.perf_counter() - start
        out["revision"] = ledger.schema_revision()
        out["counts_loaded"] = ledger.counts(run.id)
        print(f"{kind}: loaded {args.files:,} files in {out['load_s']:.0f} s "
              f"({out['load_rows_per_s']:,.0f} rows/s, indexes rebuilt and ANALYZEd); upgrade to {out['revision']} "
              f"{out['upgrade_s']:.1f} s: {out['counts_loaded']}", flush=True)

        capture = Capture(ledger.engine)
        since = lambda: dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10)  # noqa: E731
        claimed: list = []

        def claim():
            claimed.append(ledger.claim(run.id, "bench-orchestrator", 256, 600))

        def record():
            batch = claimed.pop() if claimed else ledger.claim(run.id, "bench-orchestrator", 256, 600)
            ledger.record([Outcome(c.file_id, FileResult(uri=c.uri, language="en", confidence=0.9, agreement="single",
                                                         models=(ModelVerdict("null", "en", 0.9, {"en": 0.9}),)),
                                   worker="w") for c in batch], "bench-orchestrator", 3, 30.0)

        calls = {
            "claim(256)": claim,
            "record(256)": record,
            "counts": lambda: ledger.counts(run.id),
            "top_errors": lambda: ledger.top_errors(run.id),
            "done_since(10 min)": lambda: ledger.done_since(run.id, since()),
            "first_finished_since(10 min)": lambda: ledger.first_finished_since(run.id, since()),
            "Run.status()": Run("archive", ledger=ledger).status,
        }
        out["timings"] = {}
        for name, call in calls.items():
            call()  # warm the cache and the statement cache
            out["timings"][name] = timed(call, args.repeat)
            t = out["timings"][name]
            flag = "" if t["median_ms"] < TARGET_MS else "  OVER TARGET"
            print(f"  {name:<28} median {t['median_ms']:8.1f} ms  (min {t['min_ms']:.1f}, max {t['max_ms']:.1f}){flag}",
                  flush=True)
        out["plans"] = {}
        for name, call in calls.items():
            if out["timings"][name]["median_ms"] >= TARGET_MS or args.explain_all:
                with capture() as statements:
                    call()
                out["plans"][name] = explain(ledger, statements, ledger.dialect)
                print(f"\n  plan of {name}:\n" + "\n".join("    " + line for line in out["plans"][name].splitlines()))

        moment = since()
        exact = exact_figures(ledger, run.id, moment)
        ledger_says = {"counts": ledger.counts(run.id), "top_errors": dict(ledger.top_errors(run.id, limit=100)),
                       "done_since": ledger.done_since(run.id, moment)}
        out["agrees_with_group_by"] = {k: ledger_says[k] == exact[k] for k in exact}
        print(f"\n  ledger agrees with a GROUP BY over files: {out['agrees_with_group_by']} ({ledger_says['counts']})",
              flush=True)
        ledger.engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_ledger_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5_000_000)
    parser.add_argument("--dbs", default="postgresql,sqlite")
    parser.add_argument("--pg", default=os.environ.get("LID_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432"))
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--explain-all", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the databases (prints their URLs)")
    parser.add_argument("--no-wait", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "ledger_scale.json")
    args = parser.parse_args()
    results = []
    for kind in [d.strip() for d in args.dbs.split(",") if d.strip()]:
        if not args.no_wait:
            wait_for_quiet_machine()
        print(f"\n== {kind}: {args.files:,} files, load {os.getloadavg()[0]:.2f} ==", flush=True)
        results.append(bench_database(kind, args))
    meta = {"lid_dask_code": code_label(), "files": args.files, "repeat": args.repeat, "cores": os.cpu_count(), "mix": MIX,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command_line()}
    print("\n| ledger | load rows/s | " + " | ".join(results[0]["timings"]) + " |" if results else "")
    for r in results:
        print(f"| {r['db']} | {r['load_rows_per_s']:,.0f} | " +
              " | ".join(f"{t['median_ms']:.1f} ms" for t in r["timings"].values()) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
