"""The Python API for distributed, resumable runs (what `lid-dask run/status/export/retry` use).

    run = Run.create("podcasts", ["s3://archive/podcasts/"], db="postgresql+psycopg://...")
    run.execute(client)            # or run.execute() for a local cluster; safe to interrupt
    run.results()                  # pandas; run.to_dask() for a Dask DataFrame
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import difflib
import hashlib
import math
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from lid_dask import acceptance
from lid_dask.config import IdentifyConfig
from lid_dask.figures import MONITOR_KEY, Monitor, from_ledger
from lid_dask.ledger import Ledger, RunInfo
from lid_dask.ledger.ledger import DEFAULT_URL
from lid_dask.models import ModelSpec
from lid_dask.orchestrator import Orchestrator, Progress, RunSettings
from lid_dask.sources import iter_entries
from lid_dask.storage import local_worker_environment, split_secrets

log = logging.getLogger(__name__)

RESULT_DTYPES = {
    "file_id": "int64", "uri": "str", "state": "str", "language": "str", "confidence": "float64",
    "agreement": "str", "needs_review": "boolean", "review_reasons": "str", "duration": "float64",
    "speech_seconds": "float64", "attempts": "int64", "error_kind": "str", "error": "str", "worker": "str",
    "finished_at": "datetime64[ns, UTC]",
}


@dataclass
class Status:
    """Counts by state, pace and the most common errors of a run."""

    name: str
    counts: dict[str, int]
    rate: float  # files/s since the first file finished in the last ten minutes; NaN: not measurable yet
    top_errors: list[tuple[str, int]]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def remaining(self) -> int:
        return self.counts["pending"] + self.counts["leased"] + self.counts["failed"]

    @property
    def eta(self) -> dt.timedelta | None:
        return dt.timedelta(seconds=round(self.remaining / self.rate)) if self.rate > 0 else None


@dataclass
class Summary:
    """What a run found: answers by language, what needs a person and why, what failed and why."""

    name: str
    languages: list[tuple[str | None, int, float]]  # (language, files, seconds of audio); None: no speech
    needs_review: int
    review_reasons: dict[str, int]
    failures: list[tuple[str, int]]  # (error kind, files) of failed and dead files
    finished: int = 0  # files done or failed for good
    accept_rule: dict | None = None  # the accept rule its answers go through; None: the default rule
    rule_refused: str | None = None  # why the accept rule in its settings was refused

    @property
    def answered(self) -> int:
        return sum(n for _, n, _ in self.languages)

    @property
    def accepted(self) -> int:
        """Answers that no review reason sends to a person."""
        return self.answered - self.needs_review

    @property
    def audio_hours(self) -> float:
        return sum(seconds for _, _, seconds in self.languages) / 3600


SAFE_ENGINE_CHANGES = frozenset({"device", "allow_private_network", "chunk_files", "decode_threads", "storage_options"})


class RunConfigMismatch(ValueError):
    """Options given for an existing run that differ from the ones it was made with."""


def default_name(sources: list[str]) -> str:
    """A run's name from its sources: the first one's last part plus a digest of them all, so that
    the same `lid-dask run SOURCES` resumes the same run and other sources get another."""
    digest = hashlib.sha256("\n".join(sorted(sources)).encode()).hexdigest()[:8]
    stem = file_name(sources[0].rstrip("/").rsplit("/", 1)[-1].split("?")[0])[:40]
    return f"{stem}-{digest}"


def _split_options(options: dict) -> tuple[dict, dict]:
    """(engine settings, run settings) by field name (the two share none); any other name is a
    typo, reported with the closest name of either."""
    engine_names = {f.name for f in dataclasses.fields(IdentifyConfig)}
    run_names = {f.name for f in dataclasses.fields(RunSettings)} - {"identify"}
    for unknown in sorted(set(options) - engine_names - run_names):
        close = difflib.get_close_matches(unknown, engine_names | run_names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown setting {unknown!r}{hint}; engine settings: {', '.join(sorted(engine_names))}; "
                         f"run settings: {', '.join(sorted(run_names))}")
    return ({k: v for k, v in options.items() if k in engine_names},
            {k: v for k, v in options.items() if k not in engine_names})


def _check_same(info: RunInfo, engine_given: dict) -> None:
    """Raise `RunConfigMismatch` if an engine setting given differs from the run's stored one."""
    stored = IdentifyConfig.from_dict(info.config.get("identify", {}))
    given = stored.replace(**engine_given)
    differences = [(key, getattr(stored, key), getattr(given, key)) for key in engine_given
                   if getattr(given, key) != getattr(stored, key)]
    if differences:
        listed = "; ".join(f"{key}: the run has {_shown(old)}, given {_shown(new)}" for key, old, new in differences)
        raise RunConfigMismatch(
            f"run {info.name!r} was made with other settings ({listed}). Resume it without them, change "
            f"what is safe to change with `lid-dask config set {info.name} KEY=VALUE`, start a new run with "
            f"--name, or delete this one with `lid-dask delete {info.name} --yes`")


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def file_name(run_name: str) -> str:
    """A file name for `run_name` in the working folder (a name like ``../../x`` cannot steer it)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_name).lstrip(".") or "run"


class Run:
    """A named run in a ledger: its configuration, files and results.

    `storage_options` may hold credentials: they are used by this process (listing sources, and
    the workers of a local cluster it starts) and are never stored nor sent to remote workers
    (see `lid_dask.storage`).
    """

    def __init__(self, name: str, db: str = DEFAULT_URL, ledger: Ledger | None = None,
                 storage_options: dict | None = None):
        self.ledger = ledger or Ledger.existing(db)
        self.info = self.ledger.get_run(name)
        self.name = name
        self.storage_options = storage_options
        self.added = 0  # files registered by the call that made this object (Run.create)

    @property
    def config(self) -> dict:
        """The stored configuration: engine settings under "identify", then the run settings."""
        return self.info.config

    def configure(self, **changes) -> dict:
        """Change settings that are safe to change mid-run (`SAFE_CHANGES`); returns the new config.

        The settings that decide the answers (models, windows, languages, consensus...) cannot
        change: the run would mix two configurations' answers. Start a new run instead.
        """
        engine_changes, settings = _split_options(changes)
        unsafe = sorted(set(engine_changes) - SAFE_ENGINE_CHANGES)
        if unsafe:
            raise ValueError(f"{', '.join(unsafe)} decide the answers and cannot change in run {self.name!r}: "
                             "its files would be answered by two configurations; start a new run (--name NEW)")
        engine = IdentifyConfig.from_dict(self.config.get("identify", {})).replace(**engine_changes)
        config = {**self.config, **settings, "identify": engine.to_dict()}
        RunSettings.from_config(config)
        self.ledger.set_config(self.info.id, config)
        self.info = self.ledger.get_run(self.name)
        return self.config

    def delete(self) -> None:
        """Remove the run with its files, results and history from the ledger."""
        self.ledger.delete_run(self.name)

    @classmethod
    def create(cls, name: str | None = None, sources: Iterable[str] = (), db: str = DEFAULT_URL, *,
               storage_options: dict | None = None, allowed_roots: Iterable[str] = (), calibrated: bool = True,
               **options) -> Run:
        """Create a run and register `sources` in it, or reopen the run of that name and register
        the new ones (`Run.added` says how many files this call registered).

        `options` are engine settings (the fields of `IdentifyConfig`: ``models``, ``windows``,
        ``languages``, ``vad``...) and run settings (the fields of `RunSettings`: ``batch_files``,
        ``max_attempts``...); a name that is neither is an error. Everything that can be checked is
        checked before anything is stored: the settings, that each model can be found here, that the
        allow-list is among the models' languages, and, for an existing run, that the engine settings
        given are the ones it was made with (`RunConfigMismatch` otherwise; run settings, which only
        pace the work, are updated). Without a `name`, the run is
        named after its sources (`default_name`), so the same sources resume the same run. With
        `calibrated`, the newest calibration of each model stored in the ledger (`lid-dask
        calibrate`) is applied to its answers before consensus, and the newest accept rule that
        holds for these models, calibrations and settings decides which answers need no review
        (`lid_dask.acceptance`; without one, the default rule). Only the public part of
        `storage_options` (no credentials) is stored; `allowed_roots` widens what a manifest may name.
        """
        sources = [sources] if isinstance(sources, str) else list(sources)
        if storage_options is not None and not isinstance(storage_options, dict):
            raise ValueError(f"storage options must be a mapping (a JSON object), not {storage_options!r}")
        engine_given, settings = _split_options(options)
        engine = IdentifyConfig.from_dict(engine_given)
        RunSettings.from_config({}, **settings)  # a misspelt run setting fails here, before anything is stored
        engine.check_models()
        if not name and not sources:
            raise ValueError("a run needs a name or sources (its name then comes from them)")
        name = name or default_name(sources)
        ledger = Ledger(db)
        public = split_secrets(storage_options)[0] or None
        runs = {info.name: info for info in ledger.list_runs()}
        if settings.get("drift_baseline") and settings["drift_baseline"] not in runs:
            raise ValueError(f"drift_baseline names no run in {ledger.url_for_display}: {settings['drift_baseline']!r}")
        existing = runs.get(name)
        if existing is not None:
            _check_same(existing, {**engine_given, **({"storage_options": public} if public else {})})
            run = cls(name, ledger=ledger, storage_options=storage_options)
            stored = RunSettings.from_config(run.config)
            changed = {k: v for k, v in settings.items() if getattr(stored, k) != v}
            if changed:  # pacing is safe to change between sessions
                log.warning("run %s: %s", name, ", ".join(f"{k} now {v}" for k, v in changed.items()))
                run.configure(**changed)
            run.added = run.add(sources, allowed_roots=allowed_roots)
            return run
        if calibrated:
            names = [ModelSpec.parse(m).name for m in engine.models]
            calibrations = ledger.evaluations.latest_calibrations(names)
            engine = engine.replace(calibrations=calibrations or None)
            rule, why_not = acceptance.choose(ledger.evaluations.accept_rules(names), engine, names)
            if why_not:
                log.warning("run %s: %s; the default review rule applies", name, why_not)
            engine = engine.replace(accept_rule=rule)
        ledger.create_run(name, {"identify": engine.replace(storage_options=public).to_dict(), **settings})
        run = cls(name, ledger=ledger, storage_options=storage_options)
        try:
            run.added = run.add(sources, allowed_roots=allowed_roots)
        except BaseException:
            ledger.delete_run(name)  # a new run whose sources cannot be listed leaves nothing behind
            raise
        return run

    def add(self, sources: Iterable[str], storage_options: dict | None = None,
            allowed_roots: Iterable[str] = ()) -> int:
        """Register more files; files already in the run are left alone. Returns how many were new."""
        options = (storage_options or self.storage_options
                   or self.info.config.get("identify", {}).get("storage_options"))
        return self.ledger.register(self.info.id, iter_entries(list(sources), options, allowed_roots=allowed_roots))

    def execute(self, client=None, progress: bool = True, on_stop=None, console=None, **overrides) -> Progress:
        """Process the run on `client` (a local cluster if None) until nothing is left, or Ctrl-C.

        `overrides` are run settings for this session; `on_stop(files_in_flight, drain_seconds,
        releasing_now)` is called at once when Ctrl-C or SIGTERM asks the run to stop. The progress
        bar draws on `console` (a rich Console; default stderr): what is printed on it meanwhile
        appears above the bar, where another console's output would be mixed into it.
        """
        from lid_dask.cluster import cluster_client

        settings = RunSettings.from_config(self.info.config, **overrides)
        with contextlib.ExitStack() as stack:
            if client is None:
                secret = split_secrets(self.storage_options)[1]
                client = stack.enter_context(cluster_client(env=local_worker_environment(secret)))
            display = None
            if progress:
                from lid_dask.progress import RunProgress

                display = stack.enter_context(RunProgress(self.name, console))
            return Orchestrator(self.ledger, self.name, client, settings, on_progress=display and display.update,
                                on_stop=on_stop).execute()

    def status(self, window: dt.timedelta = dt.timedelta(minutes=10)) -> Status:
        """Counts, top errors and the pace over the last `window`.

        The pace is measured from the first file finished in the window, not from the window's
        start, so a run that is 20 s old (or resumed 20 s ago) is not divided by ten minutes. The
        files of that first finish were worked on before it, so only later ones are counted; until
        a later batch finishes the pace is unknown (NaN), not zero.
        """
        now = dt.datetime.now(dt.timezone.utc)
        first = self.ledger.first_finished_since(self.info.id, now - window)
        rate = math.nan
        if first is not None and now > first:
            # Finish times are stored to the microsecond: one more is "strictly after the first".
            later = self.ledger.done_since(self.info.id, first + dt.timedelta(microseconds=1))
            rate = later / (now - first).total_seconds() if later else math.nan
        return Status(self.name, self.ledger.counts(self.info.id), rate, self.ledger.top_errors(self.info.id))

    def summary(self) -> Summary:
        """Files and audio hours per language, the review queue by reason, failures by class, and
        the accept rule in force (read again: the run's fingerprint comes when it executes)."""
        info = self.ledger.get_run(self.name)
        counts = self.ledger.counts(info.id)
        return Summary(self.name, self.ledger.answers(info.id), self.ledger.needing_review(info.id),
                       self.ledger.review_reasons(info.id), self.ledger.top_errors(info.id, limit=20),
                       counts["done"] + counts["dead"], *acceptance.in_force(info.config, info.fingerprint))

    def monitor(self, client=None, baseline: str | None = None) -> Monitor:
        """The run's model behaviour as pandas frames: drift per measure, language mix and
        confidence now against the baseline, and, live from the scheduler's monitor when `client`'s
        scheduler runs it, throughput per minute and per worker. Without one (or once the scheduler
        has restarted), the drift figures come from the ledger; `baseline` names an earlier run to
        compare with instead of this run's first files."""
        if client is not None and client.get_metadata(MONITOR_KEY, default=None) is not None:
            figures = client.sync(client.scheduler.lid_dask_figures, run=self.name)
            if figures:
                return Monitor.of(self.name, figures, "scheduler")
        baseline_id = self.ledger.get_run(baseline).id if baseline else None
        figures = from_ledger(self.ledger, self.info.id, baseline_id)
        return Monitor.of(self.name, {**figures, "baseline_source": f"run {baseline}" if baseline else "first files"},
                          "ledger")

    def retry(self, kinds: list[str] | None = None) -> int:
        """Send failed and dead files (optionally only these error kinds) back to pending."""
        return self.ledger.retry(self.info.id, kinds=kinds)

    def results(self) -> pd.DataFrame:
        return self.ledger.results_frame(self.info.id)

    def predictions(self) -> pd.DataFrame:
        """One row per file and model: each model's own answer."""
        return self.ledger.predictions_frame(self.info.id)

    def workers(self) -> pd.DataFrame:
        """Workers seen by this run, with their fingerprint and whether it drifted."""
        return self.ledger.workers_frame(self.info.id)

    def to_dask(self, npartitions: int | None = None):
        """The results as a Dask DataFrame, read from the ledger partition by partition."""
        import dask.dataframe as dd

        query = self.ledger.results_query(self.info.id)
        total = max(1, sum(self.ledger.counts(self.info.id).values()))
        parts = npartitions or max(1, total // 250_000)
        # A subquery, so Dask's per-partition bounds on file_id apply to files, not to the outer-joined results.
        subquery = query.order_by(None).subquery()
        naive = self.ledger.dialect == "sqlite"  # SQLite hands back naive datetimes (written in UTC)
        dtypes = {**RESULT_DTYPES, "finished_at": "datetime64[ns]"} if naive else RESULT_DTYPES
        meta = pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in dtypes.items()}).set_index("file_id")
        frame = dd.read_sql_query(sa.select(subquery), self.ledger.url, index_col="file_id", npartitions=parts, meta=meta)
        return frame.assign(finished_at=frame["finished_at"].dt.tz_localize("UTC")) if naive else frame

    def export(self, path: str, fmt: str = "parquet", storage_options: dict | None = None) -> int:
        """Write the results to `path` (any fsspec URL that outlives this process) in chunks;
        returns the number of rows."""
        import fsspec
        from fsspec.implementations.memory import MemoryFileSystem

        fs, _ = fsspec.core.url_to_fs(path, **(storage_options or {}))
        if isinstance(fs, MemoryFileSystem):
            raise ValueError(f"{path}: an in-memory file vanishes when this process ends; export to a file or an "
                             "object store")
        rows = 0
        with fsspec.open(path, "wb", **(storage_options or {})) as handle:
            writer = None
            for chunk in self.ledger.iter_results(self.info.id):
                rows += len(chunk)
                if fmt == "csv":
                    chunk.to_csv(handle, header=writer is None, index=False)
                    writer = True
                elif fmt == "parquet":
                    import pyarrow as pa
                    import pyarrow.parquet as pq

                    table = pa.Table.from_pandas(chunk, preserve_index=False)
                    writer = writer or pq.ParquetWriter(handle, table.schema)
                    writer.write_table(table.cast(writer.schema))
                else:
                    raise ValueError(f"unknown export format {fmt!r}; choose parquet or csv")
            if fmt == "parquet" and writer is not None:
                writer.close()
        return rows
