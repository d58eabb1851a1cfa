"""The ledger's tables (SQLAlchemy Core: bulk upserts of millions of rows need no ORM objects).

One row per file and run holds its state; `due_at` is the one time that matters for that state
(pending: when registered, leased: when the lease expires, failed: when to retry, done and dead:
when it finished), so claiming work, expiring leases and counting recent finishes are all range
scans of one index.
"""

from __future__ import annotations

from sqlalchemy import (JSON, BigInteger, Boolean, Column, DateTime, Float, ForeignKey, Index, Integer, MetaData,
                        String, Table, Text, UniqueConstraint)

from lid_dask.vocabulary import FileState

metadata = MetaData()

# File states (`FileState`), by their short names in queries
PENDING, LEASED, DONE, FAILED, DEAD = FileState
STATES = tuple(FileState)

runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("config", JSON, nullable=False),
    Column("fingerprint", JSON),
    Column("lock_owner", String(200)),
    Column("lock_expires_at", DateTime(timezone=True)),
)

files = Table(
    "files", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("uri", Text, nullable=False),
    Column("size", BigInteger),
    Column("state", String(16), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("lease_owner", String(200)),
    Column("error_kind", String(40)),
    Column("error", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("run_id", "uri", name="files_run_uri"),
    Index("files_claim", "run_id", "state", "due_at"),
)

# Added in revision 0003: the number of files of each run by state and error kind ('' for none),
# kept exact by triggers on `files` (see that migration), so status queries read a few rows
# instead of counting millions.
run_state_counts = Table(
    "run_state_counts", metadata,
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("state", String(16), primary_key=True),
    Column("error_kind", String(40), primary_key=True),
    Column("n", BigInteger, nullable=False),
)

results = Table(
    "results", metadata,
    Column("file_id", BigInteger().with_variant(Integer, "sqlite"), ForeignKey("files.id", ondelete="CASCADE"),
           primary_key=True),
    Column("language", String(40)),
    Column("confidence", Float),
    Column("agreement", String(16)),
    Column("needs_review", Boolean, nullable=False),
    Column("review_reasons", String(200)),
    Column("duration", Float),
    Column("speech_seconds", Float),
    Column("worker", String(200)),
    Column("finished_at", DateTime(timezone=True), nullable=False),
)

predictions = Table(
    "predictions", metadata,
    Column("file_id", BigInteger().with_variant(Integer, "sqlite"), ForeignKey("files.id", ondelete="CASCADE"),
           primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("language", String(40)),
    Column("probability", Float),
    Column("top", JSON),
    Column("windows_disagree", Boolean),
)

attempts = Table(
    "attempts", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("file_id", BigInteger().with_variant(Integer, "sqlite"), ForeignKey("files.id", ondelete="CASCADE"),
           nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("worker", String(200)),
    Column("outcome", String(16), nullable=False),
    Column("error_kind", String(40)),
    Column("error", Text),
    Index("attempts_file", "file_id"),
)

workers = Table(
    "workers", metadata,
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("fingerprint", JSON),
    Column("status", String(16), nullable=False),  # ok | flagged
    Column("reason", Text),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
)

# Added in revision 0002: evaluations, calibrations and reviewed ground truth.

evaluations = Table(
    "evaluations", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dataset", String(200), nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="SET NULL")),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("models", JSON, nullable=False),
    Column("fingerprints", JSON),
    Column("summary", JSON, nullable=False),  # headline figures per model, for listings
    Column("result", Text, nullable=False),  # the xarray Dataset as JSON (lid_dask.evaluation.serialize)
    Index("evaluations_dataset", "dataset", "id"),
)

calibrations = Table(
    "calibrations", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("model_sha256", String(64)),
    Column("method", String(40), nullable=False),
    Column("params", JSON, nullable=False),
    Column("dataset", String(200), nullable=False),
    Column("ece_before", Float),
    Column("ece_after", Float),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("calibrations_model", "model", "id"),
)

# Added in revision 0004: accept rules (`lid_dask.acceptance`), fitted on labelled files of a run.
accept_rules = Table(
    "accept_rules", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("models_key", String(400), nullable=False),  # the model names, sorted and comma-separated
    Column("models", JSON, nullable=False),  # [{"name", "model_sha256"}]: the weights it was fitted on
    Column("calibrations", JSON, nullable=False),  # {model: stored calibration id or None}: the confidence's
    Column("settings", JSON, nullable=False),  # the engine settings that decide answers (RULE_SETTINGS)
    Column("params", JSON, nullable=False),  # AcceptRule.to_dict(): threshold, target, level, counts
    Column("dataset", String(200), nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="SET NULL")),
    Column("labels_sha256", String(64), nullable=False),  # of the labelled files it was fitted on (uri, label)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("accept_rules_models", "models_key", "id"),
)

labels = Table(
    "labels", metadata,
    Column("dataset", String(200), primary_key=True),
    Column("uri", Text, primary_key=True),
    Column("language", String(40), nullable=False),
    Column("source", String(40), nullable=False),  # e.g. review
    Column("reviewer", String(200)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
