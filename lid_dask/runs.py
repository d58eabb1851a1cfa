"""The Python API for distributed, resumable runs (what `lid-dask run/status/export/retry` use).

    run = Run.create("podcasts", ["s3://archive/podcasts/"], db="postgresql+psycopg://...")
    run.execute(client)            # or run.execute() for a local cluster; safe to interrupt
    run.results()                  # pandas; run.to_dask() for a Dask DataFrame
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from lid_dask.config import IdentifyConfig
from lid_dask.ledger import Ledger
from lid_dask.ledger.ledger import DEFAULT_URL
from lid_dask.models import ModelSpec
from lid_dask.orchestrator import Orchestrator, Progress, RunSettings
from lid_dask.sources import iter_entries
from lid_dask.storage import local_worker_environment, split_secrets

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

    @classmethod
    def create(cls, name: str | None = None, sources: Iterable[str] = (), db: str = DEFAULT_URL, *,
               storage_options: dict | None = None, allowed_roots: Iterable[str] = (), calibrated: bool = True,
               **options) -> Run:
        """Create a run (or reopen the one with that name) and register `sources` in it.

        `options` are engine settings (the fields of `IdentifyConfig`: ``models``, ``windows``,
        ``languages``, ``vad``...) and run settings (the fields of `RunSettings`: ``batch_files``,
        ``max_attempts``...); a name that is neither is an error. With `calibrated`, the newest
        calibration of each model stored in the ledger (`lid-dask calibrate`) is applied to its
        answers before consensus. Only the public part of `storage_options` (no credentials) is
        stored with the run; `allowed_roots` widens what a manifest may name.
        """
        engine_names = {f.name for f in dataclasses.fields(IdentifyConfig)}
        engine = IdentifyConfig.from_dict({k: v for k, v in options.items() if k in engine_names})
        settings = {k: v for k, v in options.items() if k not in engine_names}
        RunSettings.from_config({}, **settings)  # a misspelt run setting fails here, before anything is stored
        ledger = Ledger(db)
        name = name or dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")
        if calibrated:
            calibrations = ledger.evaluations.latest_calibrations([ModelSpec.parse(m).name for m in engine.models])
            engine = engine.replace(calibrations=calibrations or None)
        engine = engine.replace(storage_options=split_secrets(storage_options)[0] or None)
        ledger.create_run(name, {"identify": engine.to_dict(), **settings})
        run = cls(name, ledger=ledger, storage_options=storage_options)
        run.add(sources, allowed_roots=allowed_roots)
        return run

    def add(self, sources: Iterable[str], storage_options: dict | None = None,
            allowed_roots: Iterable[str] = ()) -> int:
        """Register more files; files already in the run are left alone. Returns how many were new."""
        options = (storage_options or self.storage_options
                   or self.info.config.get("identify", {}).get("storage_options"))
        return self.ledger.register(self.info.id, iter_entries(list(sources), options, allowed_roots=allowed_roots))

    def execute(self, client=None, progress: bool = True, **overrides) -> Progress:
        """Process the run on `client` (a local cluster if None) until nothing is left, or Ctrl-C."""
        from lid_dask.cluster import cluster_client

        settings = RunSettings.from_config(self.info.config, **overrides)
        with contextlib.ExitStack() as stack:
            if client is None:
                secret = split_secrets(self.storage_options)[1]
                client = stack.enter_context(cluster_client(env=local_worker_environment(secret)))
            if not progress:
                return Orchestrator(self.ledger, self.name, client, settings).execute()
            from lid_dask.progress import RunProgress

            display = stack.enter_context(RunProgress(self.name))
            return Orchestrator(self.ledger, self.name, client, settings, on_progress=display.update).execute()

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
        dtypes = dict(RESULT_DTYPES)
        if self.ledger.dialect == "sqlite":  # SQLite hands back naive datetimes (written in UTC)
            dtypes["finished_at"] = "datetime64[ns]"
        meta = pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in dtypes.items()}).set_index("file_id")
        return dd.read_sql_query(sa.select(subquery), self.ledger.url, index_col="file_id", npartitions=parts, meta=meta)

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
