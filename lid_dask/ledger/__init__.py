"""The ledger: the state of every file of every run, in SQLite (a laptop) or PostgreSQL (a cluster).

Only the orchestrator writes it. Every write is an idempotent upsert in batches, so a rerun, a
retried batch or a duplicated result never duplicates a row, and any process can crash at any
moment: leases expire and files go back to pending. An answer is written only for a file leased
by the orchestrator session that writes it, and only if the answer names that file.
"""

from lid_dask.ledger.ledger import Claim, Ledger, LedgerError, Outcome, Refusal, RunInfo

__all__ = ["Claim", "Ledger", "LedgerError", "Outcome", "Refusal", "RunInfo"]
