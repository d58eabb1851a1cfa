"""The ledger on SQLite and PostgreSQL: idempotence, leases, retries, locks, migrations."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from lid_dask.ledger import Ledger, Outcome
from lid_dask.ledger import schema
from lid_dask.results import FileResult, ModelVerdict


def ok(claim, language="en"):
    verdict = ModelVerdict("m", language, 0.9, {language: 0.9})
    return Outcome(claim.file_id, FileResult(uri=claim.uri, language=language, confidence=0.9, agreement="single",
                                             models=(verdict,)), worker="w1")


def failed(claim, kind, retryable=False):
    return Outcome(claim.file_id, FileResult(uri=claim.uri, error_kind=kind, error=f"{kind} happened",
                                             retryable=retryable), worker="w1")


@pytest.fixture
def ledger(db_url):
    ledger = Ledger(db_url)
    yield ledger
    ledger.engine.dispose()


def test_migrated_schema_matches_the_tables(ledger):
    assert ledger.schema_revision() == "0003"
    with ledger.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), schema.metadata)
    assert diff == []
    Ledger(ledger.url)  # migrating again is a no-op


def test_registration_is_idempotent_and_new_files_join(ledger):
    run = ledger.create_run("r", {"identify": {}})
    assert ledger.register(run.id, [f"/a/{i}.wav" for i in range(2500)]) == 2500
    assert ledger.register(run.id, [f"/a/{i}.wav" for i in range(2500)]) == 0
    assert ledger.register(run.id, [("/a/0.wav", 10), ("/a/new.wav", 20)]) == 1
    assert ledger.counts(run.id)["pending"] == 2501
    assert ledger.create_run("r", {"other": True}).id == run.id  # reopening resumes


def test_claims_never_overlap_and_leases_expire(ledger):
    run = ledger.create_run("r", {})
    ledger.register(run.id, [f"/a/{i}.wav" for i in range(10)])
    first = ledger.claim(run.id, "one", 6, lease_seconds=60)
    second = ledger.claim(run.id, "two", 6, lease_seconds=0.2)
    assert len(first) == 6 and len(second) == 4
    assert not {c.file_id for c in first} & {c.file_id for c in second}
    assert ledger.claim(run.id, "three", 5, 60) == []
    time.sleep(0.3)
    assert ledger.expire_leases(run.id) == 4  # "two" crashed; its files are pending again
    assert {c.uri for c in ledger.claim(run.id, "three", 10, 60)} == {c.uri for c in second}


def test_outcomes_transient_backoff_then_dead_and_idempotent_writes(ledger):
    run = ledger.create_run("r", {})
    ledger.register(run.id, ["/ok.wav", "/net.wav", "/bad.wav", "/poison.wav"])
    claims = {c.uri: c for c in ledger.claim(run.id, "o", 10, 60)}
    outcomes = [ok(claims["/ok.wav"]), failed(claims["/net.wav"], "network", retryable=True),
                failed(claims["/bad.wav"], "corrupt"),
                Outcome(claims["/poison.wav"].file_id, None, error_kind="killed_worker", error="poison")]
    ledger.record(outcomes, max_attempts=2, backoff=0.2)
    ledger.record(outcomes[:1], max_attempts=2, backoff=0.2)  # a duplicated result changes nothing
    assert ledger.counts(run.id) == {"pending": 0, "leased": 0, "done": 1, "failed": 1, "dead": 2}
    assert ledger.claim(run.id, "o", 10, 60) == []  # the retry is not due yet
    time.sleep(0.25)
    retry = ledger.claim(run.id, "o", 10, 60)
    assert [c.uri for c in retry] == ["/net.wav"] and retry[0].attempts == 2
    ledger.record([failed(retry[0], "network", retryable=True)], max_attempts=2, backoff=0.2)
    frame = ledger.results_frame(run.id).set_index("uri")
    assert frame.loc["/net.wav", "state"] == "dead" and "gave up after 2 attempts" in frame.loc["/net.wav", "error"]
    assert frame.loc["/ok.wav", "language"] == "en" and frame.loc["/poison.wav", "error_kind"] == "killed_worker"
    with ledger.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(schema.results)).scalar() == 1
        assert connection.execute(sa.select(sa.func.count()).select_from(schema.predictions)).scalar() == 1
    assert dict(ledger.top_errors(run.id)) == {"network": 1, "corrupt": 1, "killed_worker": 1}
    assert ledger.retry(run.id, kinds=["network"]) == 1
    assert ledger.counts(run.id)["pending"] == 1


def test_release_gives_files_back_without_spending_an_attempt(ledger):
    run = ledger.create_run("r", {})
    ledger.register(run.id, ["/a.wav", "/b.wav"])
    claims = ledger.claim(run.id, "o", 10, 60)
    assert ledger.release([c.file_id for c in claims], "someone-else") == 0
    assert ledger.release([c.file_id for c in claims], "o") == 2
    assert [c.attempts for c in ledger.claim(run.id, "o", 10, 60)] == [1, 1]


def test_run_lock(ledger):
    run = ledger.create_run("r", {})
    assert ledger.acquire_lock(run.id, "a", 0.3)
    assert not ledger.acquire_lock(run.id, "b", 10)
    assert ledger.acquire_lock(run.id, "a", 0.3)  # renewal
    time.sleep(0.4)
    assert ledger.acquire_lock(run.id, "b", 10)  # a's lock expired
    ledger.release_lock(run.id, "b")
    assert ledger.lock_holder(run.id) == (None, None)


def test_worker_fingerprints_upsert(ledger):
    run = ledger.create_run("r", {})
    ledger.record_worker(run.id, "w1", {"a": 1}, "ok", None)
    ledger.record_worker(run.id, "w1", {"a": 2}, "flagged", "a: 1 -> 2")
    frame = ledger.workers_frame(run.id)
    assert len(frame) == 1 and frame.loc[0, "status"] == "flagged"


def test_upgrade_from_the_first_revision_keeps_data(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Ledger(url, migrate=False)
    old.migrate("0001")
    run = old.create_run("r", {})
    old.register(run.id, ["/a.wav"])
    assert old.schema_revision() == "0001"
    new = Ledger(url)
    assert new.schema_revision() == "0003"
    assert new.counts(run.id)["pending"] == 1
    assert new.save_labels("reviewed", [{"uri": "/a.wav", "language": "de"}], source="review") == 1
    assert new.save_labels("reviewed", [{"uri": "/a.wav", "language": "fr"}], source="review") == 1
    assert new.labels_frame("reviewed").to_dict("records") == [{"uri": "/a.wav", "language": "fr"}]
