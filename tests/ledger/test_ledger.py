"""The ledger on SQLite and PostgreSQL: idempotence, leases, retries, locks, migrations."""

from __future__ import annotations

import math
import time
import uuid

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from lid_dask.ledger import Claim, Ledger, Outcome
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
    assert ledger.schema_revision() == "0004"
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
    assert ledger.record(outcomes, "o", max_attempts=2, backoff=0.2) == []
    duplicate = ledger.record(outcomes[:1], "o", max_attempts=2, backoff=0.2)  # a duplicated result changes nothing
    assert [r.reason for r in duplicate] == ["the file is done, not leased"]
    assert ledger.counts(run.id) == {"pending": 0, "leased": 0, "done": 1, "failed": 1, "dead": 2}
    assert ledger.claim(run.id, "o", 10, 60) == []  # the retry is not due yet
    time.sleep(0.25)
    retry = ledger.claim(run.id, "o", 10, 60)
    assert [c.uri for c in retry] == ["/net.wav"] and retry[0].attempts == 2
    ledger.record([failed(retry[0], "network", retryable=True)], "o", max_attempts=2, backoff=0.2)
    frame = ledger.results_frame(run.id).set_index("uri")
    assert frame.loc["/net.wav", "state"] == "dead" and "gave up after 2 attempts" in frame.loc["/net.wav", "error"]
    assert frame.loc["/ok.wav", "language"] == "en" and frame.loc["/poison.wav", "error_kind"] == "killed_worker"
    with ledger.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(schema.results)).scalar() == 1
        assert connection.execute(sa.select(sa.func.count()).select_from(schema.predictions)).scalar() == 1
    assert dict(ledger.top_errors(run.id)) == {"network": 1, "corrupt": 1, "killed_worker": 1}
    assert ledger.retry(run.id, kinds=["network"]) == 1
    assert ledger.counts(run.id)["pending"] == 1


def test_an_answer_is_recorded_only_for_the_file_it_names_leased_by_the_recording_session(ledger):
    run = ledger.create_run("r", {})
    ledger.register(run.id, ["/a.wav", "/b.wav", "/c.wav", "/d.wav"])
    claims = {c.uri: c for c in ledger.claim(run.id, "session-1", 3, 60)}
    a, b, c = claims["/a.wav"], claims["/b.wav"], claims["/c.wav"]
    (d,) = ledger.claim(run.id, "session-2", 1, 60)
    swapped = Outcome(a.file_id, FileResult(uri="/b.wav", language="de", confidence=0.9), worker="w1")
    refused = ledger.record([swapped, ok(b), ok(d), ok(Claim(999_999, "/x.wav", None, 1))], "session-1", 3, 30)
    assert {(r.file_id, r.reason) for r in refused} == {
        (a.file_id, "the answer names another file ('/b.wav')"),
        (d.file_id, "the file is leased by another orchestrator session"),
        (999_999, "no such file")}
    assert ledger.record([ok(b)], "session-1", 3, 30)[0].reason == "the file is done, not leased"  # only once
    frame = ledger.results_frame(run.id).set_index("uri")
    assert frame.loc["/b.wav", "state"] == "done" and frame.loc["/b.wav", "language"] == "en"
    assert list(frame.loc[["/a.wav", "/c.wav", "/d.wav"], "state"]) == ["leased"] * 3
    with ledger.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(schema.results)).scalar() == 1
        assert connection.execute(sa.select(sa.func.count()).select_from(schema.attempts)).scalar() == 1
    assert ledger.release([c.file_id], "session-1") == 1
    assert ledger.record([ok(c)], "session-1", 3, 30)[0].reason == "the file is pending, not leased"


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
    assert new.schema_revision() == "0004"
    assert new.counts(run.id)["pending"] == 1
    assert new.evaluations.save_labels("reviewed", [{"uri": "/a.wav", "language": "de"}], source="review") == 1
    assert new.evaluations.save_labels("reviewed", [{"uri": "/a.wav", "language": "fr"}], source="review") == 1
    assert new.evaluations.labels_frame("reviewed").to_dict("records") == [{"uri": "/a.wav", "language": "fr"}]


# -- the counter table (migration 0003) ------------------------------------------------------------

def assert_counts_exact(ledger):
    """run_state_counts equals a fresh GROUP BY over files, and finished files' due_at is their finish time."""
    with ledger.engine.connect() as connection:
        exact = connection.execute(sa.text(
            "SELECT run_id, state, coalesce(error_kind, ''), count(*) FROM files GROUP BY 1, 2, 3")).all()
        counted = connection.execute(sa.text("SELECT run_id, state, error_kind, n FROM run_state_counts WHERE n <> 0"
                                             )).all()
        misdated = connection.execute(sa.text(
            "SELECT count(*) FROM files WHERE state IN ('done', 'dead') AND due_at <> updated_at")).scalar()
    assert sorted(map(tuple, counted)) == sorted(map(tuple, exact))
    assert misdated == 0
    for run in ledger.list_runs():
        by_state = {state: sum(n for r, st, _, n in exact if r == run.id and st == state) for state in schema.STATES}
        assert ledger.counts(run.id) == by_state
        errors = {}
        for r, state, kind, n in exact:
            if r == run.id and state in ("failed", "dead"):
                errors[kind] = errors.get(kind, 0) + n
        assert dict(ledger.top_errors(run.id, limit=100)) == errors


OUTCOMES = ["ok", "network", "corrupt", "lost"]
OPERATIONS = st.one_of(
    st.tuples(st.just("register"), st.integers(0, 1), st.integers(0, 12)),
    st.tuples(st.just("claim"), st.integers(0, 1), st.integers(1, 8), st.sampled_from([0.0, 60.0])),
    st.tuples(st.just("record"), st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=8)),
    st.tuples(st.just("retry"), st.integers(0, 1), st.sampled_from([None, ["network"], ["corrupt", "lost"]])),
    st.tuples(st.just("expire"), st.integers(0, 1)),
    st.tuples(st.just("release"), st.integers(1, 4)),
    st.tuples(st.just("take_over"), st.integers(0, 1)),
    st.tuples(st.just("extend"),),
    st.tuples(st.just("delete_files"), st.integers(1, 4)),
    st.tuples(st.just("delete_run"), st.integers(0, 1)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(OPERATIONS, max_size=25))
def test_state_counts_stay_exact_through_any_sequence_of_operations(ledger, operations):
    def new_run():
        run = ledger.create_run(f"run-{uuid.uuid4().hex[:8]}", {})
        ledger.register(run.id, [f"/f{i}.wav" for i in range(10)])
        return run

    runs = [new_run(), new_run()]
    held = []  # claims not yet recorded
    for operation in operations:
        name, *args = operation
        if name == "register":  # some new files, some already there
            which, n = args
            ledger.register(runs[which].id, [f"/f{i}.wav" for i in range(5, 5 + n)])
        elif name == "claim":
            which, limit, lease = args
            held += ledger.claim(runs[which].id, "o", limit, lease)
        elif name == "record" and held:
            batch, held = held[:len(args[0])], held[len(args[0]):]
            ledger.record([ok(c) if what == "ok" else
                           Outcome(c.file_id, None, error_kind="lost", error="lost", retryable=True) if what == "lost"
                           else failed(c, what, retryable=what == "network")
                           for c, what in zip(batch, args[0])], "o", max_attempts=2, backoff=0.0)
        elif name == "retry":
            which, kinds = args
            ledger.retry(runs[which].id, kinds=kinds)
        elif name == "expire":
            ledger.expire_leases(runs[args[0]].id)
        elif name == "release" and held:
            batch, held = held[:args[0]], held[args[0]:]
            ledger.release([c.file_id for c in batch], "o")
        elif name == "take_over":
            ledger.take_over(runs[args[0]].id, "o")
        elif name == "extend":
            ledger.extend_leases([c.file_id for c in held], "o", 60)
        elif name == "delete_files" and held:  # an operator's clean-up, straight in SQL
            with ledger.engine.begin() as connection:
                connection.execute(schema.files.delete().where(
                    schema.files.c.id.in_([c.file_id for c in held[:args[0]]])))
        elif name == "delete_run":
            with ledger.engine.begin() as connection:
                connection.execute(schema.runs.delete().where(schema.runs.c.id == runs[args[0]].id))
            runs[args[0]] = new_run()
        if name.startswith("delete"):  # claims of deleted files cannot be recorded
            with ledger.engine.connect() as connection:
                existing = set(connection.execute(sa.select(schema.files.c.id)).scalars())
            held = [c for c in held if c.file_id in existing]
        assert_counts_exact(ledger)


def test_counts_follow_a_change_of_error_kind_alone(ledger):
    run = ledger.create_run("r", {})
    ledger.register(run.id, ["/a.wav"])
    claim = ledger.claim(run.id, "o", 1, 60)[0]
    ledger.record([failed(claim, "corrupt")], "o", max_attempts=1, backoff=0)
    with ledger.engine.begin() as connection:  # an operator's correction, straight in SQL
        connection.execute(schema.files.update().where(schema.files.c.id == claim.file_id).values(error_kind="lost"))
    assert ledger.top_errors(run.id) == [("lost", 1)]
    assert_counts_exact(ledger)


def test_upgrade_backfills_the_counts_and_downgrade_removes_them(db_url):
    ledger = Ledger(db_url, migrate=False)
    ledger.migrate("0002")
    first, second = ledger.create_run("first", {}), ledger.create_run("second", {})
    ledger.register(first.id, [f"/a/{i}.wav" for i in range(10)])
    ledger.register(second.id, ["/b/0.wav", "/b/1.wav"])
    claims = ledger.claim(first.id, "o", 6, 60)
    ledger.record([ok(claims[0]), ok(claims[1]), failed(claims[2], "corrupt"), failed(claims[3], "network", True),
                   failed(claims[4], "corrupt")], "o", max_attempts=3, backoff=60)

    ledger.migrate()
    assert ledger.schema_revision() == "0004"
    assert ledger.counts(first.id) == {"pending": 4, "leased": 1, "done": 2, "failed": 1, "dead": 2}
    assert ledger.counts(second.id) == {"pending": 2, "leased": 0, "done": 0, "failed": 0, "dead": 0}
    assert ledger.top_errors(first.id) == [("corrupt", 2), ("network", 1)]
    ledger.record([ok(claims[5])], "o", max_attempts=3, backoff=60)  # the triggers carry on from the backfill
    assert_counts_exact(ledger)

    ledger.downgrade("0002")
    assert ledger.schema_revision() == "0002"
    assert "run_state_counts" not in sa.inspect(ledger.engine).get_table_names()
    with ledger.engine.connect() as connection:
        if ledger.dialect == "postgresql":
            leftovers = connection.execute(sa.text(
                "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'files_count_%'")).scalar()
        else:
            leftovers = connection.execute(sa.text(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'")).scalar()
    assert leftovers == 0
    assert ledger.register(second.id, ["/b/2.wav"]) == 1  # files is writable without the counter table
    ledger.migrate()
    assert ledger.counts(second.id)["pending"] == 3
    assert_counts_exact(ledger)
    ledger.engine.dispose()


# -- accept rules (migration 0004) -------------------------------------------------------------------

def test_upgrade_adds_accept_rules_beside_the_calibrations_and_downgrade_removes_them(db_url):
    from lid_dask.acceptance import rule_settings
    from lid_dask.config import IdentifyConfig
    from lid_dask.evaluation.selective import AcceptRule

    ledger = Ledger(db_url, migrate=False)
    ledger.migrate("0003")
    run = ledger.create_run("labelled", {})
    store = ledger.evaluations
    calibration = store.save_calibration("null", None, "platt", {"method": "platt", "a": 0.5, "b": 0.0, "n": 10},
                                         "set", 0.2, 0.1)
    assert "accept_rules" not in sa.inspect(ledger.engine).get_table_names()

    ledger.migrate()
    assert ledger.schema_revision() == "0004"
    assert store.latest_calibrations(["null"])["null"]["id"] == calibration
    rule = AcceptRule(0.905, 0.97, 0.95, 300, 180, 1, 0.974)
    settings = rule_settings(IdentifyConfig(models="null"))
    rule_id = store.save_accept_rule([{"name": "null", "model_sha256": None}], {"null": calibration}, settings,
                                     rule.to_dict(), "set", run.id, "f" * 64)
    (row,) = store.accept_rules(["null"])
    assert row["id"] == rule_id and AcceptRule.from_dict(row["params"]) == rule
    assert (row["calibrations"], row["settings"], row["run_id"]) == ({"null": calibration}, settings, run.id)

    ledger.downgrade("0003")
    assert ledger.schema_revision() == "0003"
    assert "accept_rules" not in sa.inspect(ledger.engine).get_table_names()
    assert store.latest_calibrations(["null"])["null"]["id"] == calibration
    ledger.migrate()
    assert store.accept_rules(["null"]) == []
    ledger.engine.dispose()


def test_status_rate_is_measured_from_the_first_finish_not_over_ten_minutes(ledger):
    from lid_dask.runs import Run

    info = ledger.create_run("young", {})
    ledger.register(info.id, [f"/a/{i}.wav" for i in range(30)])
    run = Run("young", ledger=ledger)
    assert math.isnan(run.status().rate) and run.status().eta is None  # nothing finished yet
    ledger.record([ok(c) for c in ledger.claim(info.id, "o", 10, 60)], "o", 3, 30)
    assert math.isnan(run.status().rate) and run.status().eta is None  # one finish instant gives no pace
    time.sleep(0.5)
    ledger.record([ok(c) for c in ledger.claim(info.id, "o", 10, 60)], "o", 3, 30)
    status = run.status()
    # 10 files finished after the first batch, at least 0.5 s after it (a ten-minute divisor: 0.03 files/s).
    assert 1.0 < status.rate <= 20.0
    assert status.eta is not None and status.eta.total_seconds() <= 10 / 1.0
