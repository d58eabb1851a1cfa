"""Ledger operations: runs, registration, claiming with leases, recording outcomes, status."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from toolz import partition_all

from lid_dask.ledger import schema as s
from lid_dask.ledger.database import CHUNK, Database, LedgerError, aware, parse_url, transient, utcnow
from lid_dask.ledger.evaluations import EvaluationStore
from lid_dask.results import FileResult
from lid_dask.vocabulary import ErrorKind

DEFAULT_URL = "sqlite:///lid-dask.db"


@dataclass(frozen=True)
class RunInfo:
    id: int
    name: str
    config: dict
    fingerprint: dict | None
    created_at: dt.datetime | None = None


@dataclass(frozen=True)
class Claim:
    """A leased file: the orchestrator owns it until the lease expires."""

    file_id: int
    uri: str
    size: int | None
    attempts: int


@dataclass
class Outcome:
    """What happened to one claimed file, to be written in the batch's transaction."""

    file_id: int
    result: FileResult | None = None  # None: the file's work was lost or killed its worker
    worker: str | None = None
    error_kind: str | None = None
    error: str | None = None
    retryable: bool = False
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Refusal:
    """An outcome `Ledger.record` did not write, and why."""

    file_id: int
    uri: str | None  # the file the refused answer names, if it carried one
    reason: str


class Ledger:
    """All reads and writes of the ledger database; see the package docstring."""

    def __init__(self, url: str = DEFAULT_URL, migrate: bool = True, patience: float = 60.0):
        """Open the ledger at `url`, creating or upgrading its schema when `migrate` (what a run
        does); read-only commands use `Ledger.existing`, which changes nothing. Once the database
        has answered, an outage of up to `patience` seconds is waited out (`transient`)."""
        self.db = Database(url, patience)
        self.url = url
        self.engine = self.db.engine
        self.dialect = self.db.dialect
        self.evaluations = EvaluationStore(self.db)
        if migrate:
            try:
                self.migrate()
            except sa.exc.OperationalError as exc:  # never reached: a wrong host, port, user or database
                raise LedgerError(f"cannot open the ledger at {self.url_for_display}: {_reason(exc)}") from None

    @classmethod
    def existing(cls, url: str = DEFAULT_URL) -> Ledger:
        """The ledger at `url`, which must exist with the current schema: nothing is created,
        no file, no database, no table, and the schema is not upgraded."""
        parsed = parse_url(url)
        if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
            raise LedgerError(f"no ledger at {url}: no such file; `lid-dask run` creates one")
        ledger = cls(url, migrate=False)
        try:
            revision = ledger.schema_revision()
        except (sa.exc.ProgrammingError, sa.exc.OperationalError) as exc:
            ledger.engine.dispose()
            if isinstance(exc, sa.exc.ProgrammingError) or "no such table" in str(exc.orig):
                raise LedgerError(f"no lid-dask ledger in {ledger.url_for_display}: it has no lid-dask tables; "
                                  "`lid-dask run` creates them") from None
            raise LedgerError(f"cannot open the ledger at {ledger.url_for_display}: {_reason(exc)}") from None
        head = _head_revision()
        if revision != head:
            ledger.engine.dispose()
            raise LedgerError(f"the ledger at {ledger.url_for_display} has schema {revision}, this lid-dask uses "
                              f"{head}: upgrade it with `lid-dask db upgrade --db URL` (or use the lid-dask that "
                              "wrote it)")
        return ledger

    # -- schema -------------------------------------------------------------------------------

    @transient
    def migrate(self, revision: str = "head") -> None:
        """Bring the schema up to `revision` (Alembic); concurrent callers are serialised."""
        from alembic import command

        self._alembic(command.upgrade, revision)

    @transient
    def downgrade(self, revision: str) -> None:
        """Take the schema back to `revision`, for an older lid-dask to use the ledger."""
        from alembic import command

        self._alembic(command.downgrade, revision)

    def _alembic(self, action, revision: str) -> None:
        config = _alembic_config()
        with self.engine.begin() as connection:
            if self.dialect == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(7261636)"))
            else:  # pysqlite runs DDL outside a transaction unless one is open: make it one, holding the write lock
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            config.attributes["connection"] = connection
            action(config, revision)

    @transient
    def schema_revision(self) -> str | None:
        with self.engine.connect() as connection:
            return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    # -- runs ---------------------------------------------------------------------------------

    @transient
    def create_run(self, name: str, config: dict) -> RunInfo:
        """Create the run, or return the existing run of that name (resuming it)."""
        with self.engine.begin() as connection:
            insert = self.db.insert(s.runs).values(name=name, created_at=utcnow(), config=config)
            connection.execute(insert.on_conflict_do_nothing(index_elements=["name"]))
        return self.get_run(name)

    @transient
    def get_run(self, name: str) -> RunInfo:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(s.runs).where(s.runs.c.name == name)).first()
        if row is None:
            raise LookupError(f"no run named {name!r} in {self.url_for_display}")
        return RunInfo(row.id, row.name, row.config, row.fingerprint, aware(row.created_at))

    @transient
    def list_runs(self) -> list[RunInfo]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(s.runs).order_by(s.runs.c.id)).all()
        return [RunInfo(r.id, r.name, r.config, r.fingerprint, aware(r.created_at)) for r in rows]

    @transient
    def set_config(self, run_id: int, config: dict) -> None:
        with self.engine.begin() as connection:
            connection.execute(s.runs.update().where(s.runs.c.id == run_id).values(config=config))

    @transient
    def delete_run(self, name: str) -> None:
        """Delete a run and, by cascade, its files, results, predictions, attempts and workers;
        refused while an orchestrator holds the run's lock."""
        with self.engine.begin() as connection:
            row = connection.execute(sa.select(s.runs.c.lock_owner, s.runs.c.lock_expires_at)
                                     .where(s.runs.c.name == name)).first()
            if row is None:
                raise LookupError(f"no run named {name!r} in {self.url_for_display}")
            if row.lock_owner and aware(row.lock_expires_at) > utcnow():
                raise RuntimeError(f"run {name!r} is being processed by {row.lock_owner}; stop it first")
            connection.execute(s.runs.delete().where(s.runs.c.name == name))

    @transient
    def set_fingerprint(self, run_id: int, fingerprint: dict) -> None:
        with self.engine.begin() as connection:
            connection.execute(s.runs.update().where(s.runs.c.id == run_id).values(fingerprint=fingerprint))

    @transient
    def acquire_lock(self, run_id: int, owner: str, ttl: float) -> bool:
        """Take (or renew) the run lock unless another live orchestrator holds it."""
        now = utcnow()
        with self.engine.begin() as connection:
            taken = connection.execute(
                s.runs.update()
                .where(s.runs.c.id == run_id)
                .where(sa.or_(s.runs.c.lock_owner.is_(None), s.runs.c.lock_owner == owner,
                              s.runs.c.lock_expires_at < now))
                .values(lock_owner=owner, lock_expires_at=now + dt.timedelta(seconds=ttl))
            ).rowcount
        return taken == 1

    @transient
    def lock_holder(self, run_id: int) -> tuple[str | None, dt.datetime | None]:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(s.runs.c.lock_owner, s.runs.c.lock_expires_at)
                                     .where(s.runs.c.id == run_id)).one()
        return row.lock_owner, aware(row.lock_expires_at)

    @transient
    def take_over(self, run_id: int, dead_owner: str) -> int:
        """Clear the lock of an orchestrator known to be dead and free its leased files."""
        with self.engine.begin() as connection:
            connection.execute(s.runs.update().where(s.runs.c.id == run_id, s.runs.c.lock_owner == dead_owner)
                               .values(lock_owner=None, lock_expires_at=None))
            return connection.execute(
                s.files.update().where(s.files.c.run_id == run_id, s.files.c.state == s.LEASED,
                                       s.files.c.lease_owner == dead_owner)
                .values(state=s.PENDING, lease_owner=None, due_at=utcnow())).rowcount

    @transient
    def release_lock(self, run_id: int, owner: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(s.runs.update().where(s.runs.c.id == run_id).where(s.runs.c.lock_owner == owner)
                               .values(lock_owner=None, lock_expires_at=None))

    # -- files --------------------------------------------------------------------------------

    def register(self, run_id: int, entries: Iterable[str | tuple[str, int | None]]) -> int:
        """Add files to a run; files already there are left alone. Returns how many were new."""
        added = 0
        now = utcnow()
        for chunk in partition_all(CHUNK, entries):
            rows = []
            for entry in chunk:
                uri, size = (entry, None) if isinstance(entry, str) else entry
                rows.append(dict(run_id=run_id, uri=uri, size=size, state=s.PENDING, due_at=now, attempts=0,
                                 updated_at=now))
            added += self._insert_files(rows)
        return added

    @transient
    def _insert_files(self, rows: list[dict]) -> int:
        """One chunk of `register` (a transaction of its own, so an outage retries just this chunk)."""
        statement = (self.db.insert(s.files).on_conflict_do_nothing(index_elements=["run_id", "uri"])
                     .returning(s.files.c.id))
        with self.engine.begin() as connection:
            # executemany: one cached statement, batched into multi-row INSERTs by SQLAlchemy
            return len(connection.execute(statement, rows).all())

    @transient
    def claim(self, run_id: int, owner: str, limit: int, lease_seconds: float) -> list[Claim]:
        """Lease up to `limit` files: retries that are due first, then pending files."""
        claims: list[Claim] = []
        for state in (s.FAILED, s.PENDING):
            if len(claims) >= limit:
                break
            claims += self._claim_state(run_id, owner, state, limit - len(claims), lease_seconds)
        return claims

    def _claim_state(self, run_id: int, owner: str, state: str, limit: int, lease_seconds: float) -> list[Claim]:
        now = utcnow()
        f = s.files
        candidates = (sa.select(f.c.id).where(f.c.run_id == run_id, f.c.state == state, f.c.due_at <= now)
                      .limit(limit))
        if self.dialect == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        statement = (f.update().where(f.c.id.in_(candidates.scalar_subquery()))
                     .values(state=s.LEASED, lease_owner=owner, due_at=now + dt.timedelta(seconds=lease_seconds),
                             attempts=f.c.attempts + 1, updated_at=now)
                     .returning(f.c.id, f.c.uri, f.c.size, f.c.attempts))
        with self.engine.begin() as connection:
            rows = connection.execute(statement).all()
        return sorted((Claim(r.id, r.uri, r.size, r.attempts) for r in rows), key=lambda c: c.file_id)

    @transient
    def extend_leases(self, file_ids: list[int], owner: str, lease_seconds: float) -> None:
        """Keep in-flight files leased while their batch is still running."""
        until = utcnow() + dt.timedelta(seconds=lease_seconds)
        with self.engine.begin() as connection:
            for chunk in partition_all(CHUNK, file_ids):
                connection.execute(s.files.update()
                                   .where(s.files.c.id.in_(chunk), s.files.c.state == s.LEASED,
                                          s.files.c.lease_owner == owner)
                                   .values(due_at=until))

    @transient
    def release(self, file_ids: list[int], owner: str) -> int:
        """Give leased files back (graceful stop): pending again, the attempt not counted."""
        released = 0
        with self.engine.begin() as connection:
            for chunk in partition_all(CHUNK, file_ids):
                released += connection.execute(
                    s.files.update()
                    .where(s.files.c.id.in_(chunk), s.files.c.state == s.LEASED, s.files.c.lease_owner == owner)
                    .values(state=s.PENDING, lease_owner=None, due_at=utcnow(), attempts=s.files.c.attempts - 1)
                ).rowcount
        return released

    @transient
    def expire_leases(self, run_id: int) -> int:
        """Files whose lease ran out (a crashed orchestrator) go back to pending."""
        now = utcnow()
        with self.engine.begin() as connection:
            return connection.execute(
                s.files.update()
                .where(s.files.c.run_id == run_id, s.files.c.state == s.LEASED, s.files.c.due_at < now)
                .values(state=s.PENDING, lease_owner=None, due_at=now, updated_at=now)
            ).rowcount

    @transient
    def record(self, outcomes: list[Outcome], owner: str, max_attempts: int, backoff: float) -> list[Refusal]:
        """Write one batch's outcomes in one transaction: results, predictions, states, attempts.

        An outcome is written only if its file is leased by `owner` (this orchestrator session)
        and a result names that very file (its uri is the file's); anything else is refused,
        written nowhere, and returned with the reason. So a late, duplicated or misdirected
        answer never lands, and a file is recorded once.
        """
        if not outcomes:
            return []
        now = utcnow()
        select_leases, set_done, set_failed = _batch_statements(self.dialect)
        with self.engine.begin() as connection:
            if self.dialect == "sqlite":  # take the write lock first: the check below must hold until commit
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            leases = {row.id: row for row in connection.execute(select_leases, dict(ids=[o.file_id for o in outcomes]))}
            refused, accepted = [], []
            for o in outcomes:
                reason = _refusal(o, leases.get(o.file_id), owner)
                if reason:
                    refused.append(Refusal(o.file_id, o.result.uri if o.result else None, reason))
                else:
                    accepted.append(o)
            done, result_rows, prediction_rows, attempt_rows = [], [], [], []
            failed: dict[tuple, list[int]] = {}
            for o in accepted:
                kind, error, retryable = _failure(o)
                attempt_rows.append(dict(file_id=o.file_id, finished_at=now, worker=o.worker,
                                         outcome="done" if kind is None else "error", error_kind=kind, error=error))
                if kind is None:
                    done.append(o.file_id)
                    result_rows.append(_result_row(o, now))
                    prediction_rows += _prediction_rows(o)
                    continue
                n = leases[o.file_id].attempts
                if retryable and n < max_attempts:
                    state, due = s.FAILED, now + dt.timedelta(seconds=backoff * 2 ** (n - 1))
                else:
                    state, due = s.DEAD, now
                    if retryable:
                        error = f"{error} (gave up after {n} attempts)"
                failed.setdefault((state, due, kind, error), []).append(o.file_id)
            # executemany with cached statements: compiling a fresh multi-row statement per batch
            # cost more than the database work itself.
            if result_rows:
                connection.execute(self.db.upsert(s.results, ["file_id"]), result_rows)
            if prediction_rows:
                connection.execute(self.db.upsert(s.predictions, ["file_id", "model"]), prediction_rows)
            if attempt_rows:
                connection.execute(self.db.many(s.attempts.insert()), attempt_rows)
            if done:
                connection.execute(set_done, dict(ids=done, now=now))
            for (state, due, kind, error), file_ids in failed.items():
                connection.execute(set_failed, dict(ids=file_ids, state=state, due=due, kind=kind, error=error,
                                                     now=now))
        return refused

    @transient
    def retry(self, run_id: int, states: tuple[str, ...] = (s.DEAD, s.FAILED), kinds: list[str] | None = None) -> int:
        """Send failed or dead files back to pending with a fresh attempt budget."""
        now = utcnow()
        query = s.files.update().where(s.files.c.run_id == run_id, s.files.c.state.in_(states))
        if kinds:
            query = query.where(s.files.c.error_kind.in_(kinds))
        with self.engine.begin() as connection:
            return connection.execute(query.values(state=s.PENDING, due_at=now, attempts=0, updated_at=now)).rowcount

    # -- workers ------------------------------------------------------------------------------

    @transient
    def record_worker(self, run_id: int, name: str, fingerprint: dict, status: str, reason: str | None) -> None:
        now = utcnow()
        row = dict(run_id=run_id, name=name, fingerprint=fingerprint, status=status, reason=reason,
                   first_seen=now, last_seen=now)
        statement = self.db.insert(s.workers).values(row)
        statement = statement.on_conflict_do_update(
            index_elements=["run_id", "name"],
            set_=dict(fingerprint=statement.excluded.fingerprint, status=statement.excluded.status,
                      reason=statement.excluded.reason, last_seen=statement.excluded.last_seen))
        with self.engine.begin() as connection:
            connection.execute(statement)

    @transient
    def workers_frame(self, run_id: int) -> pd.DataFrame:
        with self.engine.connect() as connection:
            return pd.read_sql(sa.select(s.workers).where(s.workers.c.run_id == run_id), connection)

    # -- reading ------------------------------------------------------------------------------

    @transient
    def counts(self, run_id: int) -> dict[str, int]:
        """Files of the run by state, from the counter table (exact: kept by triggers on files)."""
        c = s.run_state_counts
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(c.c.state, sa.func.sum(c.c.n))
                                      .where(c.c.run_id == run_id).group_by(c.c.state)).all()
        counts = dict.fromkeys(s.STATES, 0)
        counts.update({state: int(n) for state, n in rows})
        return counts

    @transient
    def top_errors(self, run_id: int, limit: int = 5) -> list[tuple[str, int]]:
        """The most common error kinds of failed and dead files, from the counter table."""
        c = s.run_state_counts
        n = sa.func.sum(c.c.n).label("n")
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(c.c.error_kind, n).where(c.c.run_id == run_id, c.c.state.in_((s.FAILED, s.DEAD)))
                .group_by(c.c.error_kind).having(n > 0).order_by(sa.desc("n"), c.c.error_kind).limit(limit)).all()
        return [(kind or None, int(n)) for kind, n in rows]

    @transient
    def answers(self, run_id: int) -> list[tuple[str | None, int, float]]:
        """(language, files, seconds of audio) of the run's answered files, most files first
        (language None: no speech, too short)."""
        f, r = s.files, s.results
        files = sa.func.count().label("files")
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(r.c.language, files, sa.func.coalesce(sa.func.sum(r.c.duration), 0.0))
                .select_from(r.join(f, f.c.id == r.c.file_id)).where(f.c.run_id == run_id)
                .group_by(r.c.language).order_by(sa.desc("files"), r.c.language)).all()
        return [(language, int(n), float(seconds)) for language, n, seconds in rows]

    @transient
    def review_reasons(self, run_id: int) -> dict[str, int]:
        """Files that need review, by reason (a file may have several)."""
        f, r = s.files, s.results
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(r.c.review_reasons, sa.func.count()).select_from(r.join(f, f.c.id == r.c.file_id))
                .where(f.c.run_id == run_id, r.c.needs_review).group_by(r.c.review_reasons)).all()
        reasons: dict[str, int] = {}
        for joined, n in rows:
            for reason in filter(None, (joined or "").split(",")):
                reasons[reason] = reasons.get(reason, 0) + int(n)
        return dict(sorted(reasons.items(), key=lambda item: -item[1]))

    @transient
    def needing_review(self, run_id: int) -> int:
        f, r = s.files, s.results
        with self.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(r.join(f, f.c.id == r.c.file_id))
                                      .where(f.c.run_id == run_id, r.c.needs_review)).scalar()

    @transient
    def last_finished(self, run_id: int) -> dt.datetime | None:
        """When the run's latest file finished (one index lookup per state)."""
        f = s.files
        with self.engine.connect() as connection:
            lasts = [aware(connection.execute(sa.select(sa.func.max(f.c.due_at))
                                              .where(f.c.run_id == run_id, f.c.state == state)).scalar())
                     for state in (s.DONE, s.DEAD)]
        return max((last for last in lasts if last is not None), default=None)

    @transient
    def done_since(self, run_id: int, since: dt.datetime) -> int:
        """Files finished (done or dead) since `since`: a range of the claim index, since record()
        sets a finished file's due_at to its finish time."""
        f = s.files
        with self.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).where(
                f.c.run_id == run_id, f.c.state.in_((s.DONE, s.DEAD)), f.c.due_at >= since)).scalar()

    @transient
    def first_finished_since(self, run_id: int, since: dt.datetime) -> dt.datetime | None:
        """When the first file finished since `since` (None if none did).

        One query per state: with the state fixed, min(due_at) is the first entry of a range of
        the claim index, not a scan of every file finished since `since`.
        """
        f = s.files
        firsts = []
        with self.engine.connect() as connection:
            for state in (s.DONE, s.DEAD):
                firsts.append(aware(connection.execute(sa.select(sa.func.min(f.c.due_at)).where(
                    f.c.run_id == run_id, f.c.state == state, f.c.due_at >= since)).scalar()))
        return min((first for first in firsts if first is not None), default=None)

    @transient
    def finished_window(self, run_id: int, limit: int, latest: bool = False) -> list[tuple]:
        """(language, confidence, agreement, error_kind) of the run's first (or latest) `limit`
        answered files in finishing order: a range of the claim index, whatever the run's size."""
        f, r = s.files, s.results
        order = f.c.due_at.desc() if latest else f.c.due_at.asc()
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(
                sa.select(r.c.language, r.c.confidence, r.c.agreement, f.c.error_kind)
                .select_from(f.join(r, r.c.file_id == f.c.id))
                .where(f.c.run_id == run_id, f.c.state == s.DONE).order_by(order, f.c.id).limit(limit))]

    def results_query(self, run_id: int) -> sa.Select:
        f, r = s.files, s.results
        return (sa.select(f.c.id.label("file_id"), f.c.uri, f.c.state, r.c.language, r.c.confidence, r.c.agreement, r.c.needs_review,
                          r.c.review_reasons, r.c.duration, r.c.speech_seconds, f.c.attempts, f.c.error_kind,
                          f.c.error, r.c.worker, r.c.finished_at)
                .select_from(f.outerjoin(r, r.c.file_id == f.c.id))
                .where(f.c.run_id == run_id).order_by(f.c.id))

    @transient
    def results_frame(self, run_id: int) -> pd.DataFrame:
        with self.engine.connect() as connection:
            return _in_utc(pd.read_sql(self.results_query(run_id), connection))

    def iter_results(self, run_id: int, chunksize: int = 100_000) -> Iterator[pd.DataFrame]:
        """The run's rows in chunks, for exports larger than memory."""
        with self.engine.connect().execution_options(stream_results=True) as connection:
            for chunk in pd.read_sql(self.results_query(run_id), connection, chunksize=chunksize):
                yield _in_utc(chunk)

    @transient
    def predictions_frame(self, run_id: int) -> pd.DataFrame:
        f, p = s.files, s.predictions
        query = (sa.select(f.c.uri, p.c.model, p.c.language, p.c.probability, p.c.top, p.c.windows_disagree)
                 .select_from(p.join(f, f.c.id == p.c.file_id)).where(f.c.run_id == run_id).order_by(f.c.id))
        with self.engine.connect() as connection:
            return pd.read_sql(query, connection)

    # -- helpers ------------------------------------------------------------------------------

    @property
    def url_for_display(self) -> str:
        return self.db.url_for_display


@functools.cache
def _batch_statements(dialect: str) -> tuple[sa.Select, sa.Update, sa.Update]:
    """record()'s statements over one batch of file ids: read (and lock) the leases, set done,
    set failed/dead.

    PostgreSQL takes the ids as one array (`id = ANY(:ids)`): one short statement whatever the
    batch size, instead of an IN list of one parameter per file rendered for every batch.
    """
    f = s.files
    if dialect == "postgresql":
        in_batch = f.c.id == sa.any_(sa.bindparam("ids", type_=postgresql.ARRAY(sa.BigInteger)))
    else:
        in_batch = f.c.id.in_(sa.bindparam("ids", expanding=True))
    select_leases = sa.select(f.c.id, f.c.uri, f.c.state, f.c.lease_owner, f.c.attempts).where(in_batch)
    if dialect == "postgresql":
        select_leases = select_leases.with_for_update()
    set_done = (f.update().where(in_batch)
                .values(state=s.DONE, lease_owner=None, error_kind=None, error=None,
                        updated_at=sa.bindparam("now"), due_at=sa.bindparam("now")))
    set_failed = (f.update().where(in_batch)
                  .values(state=sa.bindparam("state"), due_at=sa.bindparam("due"), lease_owner=None,
                          error_kind=sa.bindparam("kind"), error=sa.bindparam("error"), updated_at=sa.bindparam("now")))
    return select_leases, set_done, set_failed


def _in_utc(frame: pd.DataFrame) -> pd.DataFrame:
    """Finish times carry their time zone (UTC) whatever the database (SQLite stores them naive)."""
    return frame.assign(finished_at=pd.to_datetime(frame["finished_at"], utc=True))


def _reason(exc: sa.exc.DBAPIError) -> str:
    """The driver's own last line (psycopg puts the useful part there)."""
    return str(exc.orig).strip().splitlines()[-1]


def _alembic_config():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("lid_dask.ledger") / "migrations"))
    return config


def _head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def _refusal(o: Outcome, lease, owner: str) -> str | None:
    """Why an outcome may not be written for its file (None: it may)."""
    if lease is None:
        return "no such file"
    if o.result is not None and o.result.uri != lease.uri:
        return f"the answer names another file ({o.result.uri!r})"
    if lease.state != s.LEASED:
        return f"the file is {lease.state}, not leased"
    if lease.lease_owner != owner:
        return "the file is leased by another orchestrator session"
    return None


def _failure(o: Outcome) -> tuple[str | None, str | None, bool]:
    """(error kind, message, retryable) of an outcome; (None, None, False) when the file has its
    answer (`FileResult.answered`: no speech and too short are answers)."""
    if o.result is None:
        return o.error_kind or ErrorKind.LOST, o.error or "the file's work was lost", o.retryable
    if o.result.answered:
        return None, None, False
    return o.result.error_kind, o.result.error, o.result.retryable


def _result_row(o: Outcome, now: dt.datetime) -> dict:
    r = o.result
    return dict(file_id=o.file_id, language=r.language, confidence=r.confidence, agreement=r.agreement,
                needs_review=r.needs_review, review_reasons=",".join(r.review_reasons), duration=r.duration,
                speech_seconds=r.speech_seconds, worker=o.worker, finished_at=now)


def _prediction_rows(o: Outcome) -> list[dict]:
    return [dict(file_id=o.file_id, model=v.model, language=v.language, probability=v.probability, top=v.top,
                 windows_disagree=v.windows_disagree) for v in o.result.models]
