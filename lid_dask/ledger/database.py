"""One ledger database: its engine, the SQL both stores share, and patience with outages."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

log = logging.getLogger(__name__)

CHUNK = 1000  # rows per multi-row INSERT: ~20k rows/s on PostgreSQL here (brief)


class LedgerError(RuntimeError):
    """The ledger a command names is missing, unreachable or of another schema version."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive datetimes; they were written in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


class Database:
    """The engine of a ledger URL, its dialect's INSERT helpers, and whether it was ever reached
    (an outage is waited out only once the database has answered: a wrong URL fails at once)."""

    def __init__(self, url: str, patience: float = 60.0):
        self.url = url
        self.engine = _make_engine(url)
        self.dialect = self.engine.dialect.name
        self.patience = patience
        self.reached = False

    @property
    def url_for_display(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def insert(self, table: sa.Table):
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def upsert(self, table: sa.Table, keys: list[str]):
        """INSERT ... ON CONFLICT (keys) DO UPDATE every other column, for executemany."""
        statement = self.insert(table)
        update = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}
        return self.many(statement.on_conflict_do_update(index_elements=keys, set_=update))

    def many(self, insert: sa.Insert) -> sa.Insert:
        """An INSERT made fast for executemany on this database.

        SQLite: with RETURNING, so SQLAlchemy sends the rows as multi-row statements
        ("insertmanyvalues"). PostgreSQL: without, so psycopg pipelines one short statement that
        it parses once; parsing the long multi-row statements cost more than writing the rows.
        """
        return insert.returning(*insert.table.primary_key.columns) if self.dialect == "sqlite" else insert


def transient(method):
    """Wait out a database restart, a lost connection or SQLite's write lock (OperationalError)
    for `db.patience` seconds, once the database has answered before. Each call is one
    transaction, rolled back on failure, so calling it again is safe."""
    @functools.wraps(method)
    def waiting(self, *args, **kwargs):
        deadline = time.monotonic() + self.db.patience
        while True:
            try:
                result = method(self, *args, **kwargs)
            except sa.exc.OperationalError as exc:
                if not self.db.reached or time.monotonic() >= deadline:
                    raise
                log.warning("ledger unavailable (%s); retrying", str(exc.orig).strip().splitlines()[0])
                time.sleep(1.0)
                continue
            self.db.reached = True
            return result

    return waiting


EXAMPLES = "e.g. sqlite:///lid-dask.db or postgresql+psycopg://user@host:5432/lid"


def parse_url(url: str) -> sa.URL:
    try:
        return sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise LedgerError(f"{url!r} is not a database URL; {EXAMPLES}") from None


def _make_engine(url: str) -> sa.Engine:
    """The engine for `url`, or a `LedgerError` that says in one line what is wrong with the URL."""
    parsed = parse_url(url)
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "postgresql" and not parsed.database:
        # Without one, PostgreSQL connects to the user's default database (often the shared `postgres`).
        raise LedgerError(f"the ledger URL {shown} names no database; add one, {EXAMPLES}")
    if parsed.get_backend_name() == "sqlite" and parsed.database and not parsed.database.startswith(":"):
        folder = Path(parsed.database).expanduser().parent
        if not folder.is_dir():
            raise LedgerError(f"no folder {folder} for the ledger file of {shown}; create it, or use another path")
    try:
        return _create_engine(url, parsed.get_backend_name())
    except sa.exc.NoSuchModuleError:
        raise LedgerError(f"unknown database kind {parsed.drivername!r} in {shown}; {EXAMPLES}") from None
    except ImportError as exc:
        raise LedgerError(f"the database driver for {shown} is not installed ({exc.name or exc}); for PostgreSQL: "
                          "pip install 'lid-dask[postgres]'") from None


def _create_engine(url: str, backend: str) -> sa.Engine:
    if backend == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record):
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers (status) never block the writer
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # pool_pre_ping: a restarted PostgreSQL leaves dead pooled connections behind.
    return sa.create_engine(url, pool_pre_ping=True)
