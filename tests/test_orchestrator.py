"""The orchestrator's decisions, fast: a fake client whose "cluster" answers with crafted events.

The real cluster paths are in test_runs.py and test_integrity.py; here each test decides exactly
which results events arrive (stale, partial, misdirected, malformed, duplicated) and checks what
the ledger ends with.
"""

from __future__ import annotations

import time

import pytest

from distributed.scheduler import KilledWorker

from lid_dask.ledger import Claim
from lid_dask.orchestrator import POISON_VERDICTS, Orchestrator, RunSettings, _split_by_bytes
from lid_dask.results import FileResult
from lid_dask.runs import Run
from lid_dask.worker import RESULTS_TOPIC

FINGERPRINT = {"packages": {"lid-dask": "test"}}


class FakeFuture:
    def __init__(self, error: BaseException | None = None):
        self.status = "error" if error else "finished"
        self.error = error

    def exception(self, timeout=None):
        return self.error

    def release(self):
        pass

    def cancel(self):
        self.status = "cancelled"


class FakeClient:
    """Runs no task: `answer(run, token, uris, attempt)` returns the events a submitted batch sends."""

    def __init__(self, answer, threads: int = 1):
        self.answer = answer
        self.threads = threads
        self.handlers = {}
        self.submitted: list[list[str]] = []

    def nthreads(self):
        return {f"worker-{i}": 1 for i in range(self.threads)}

    def scheduler_info(self):
        return {"workers": {}}

    def get_metadata(self, keys, default=None):
        return default  # a scheduler without the monitor

    def subscribe_topic(self, topic, handler):
        self.handlers[topic] = handler

    def unsubscribe_topic(self, topic):
        self.handlers.pop(topic)

    def submit(self, task, run, token, uris, config_json, **_):
        self.submitted.append(uris)
        answer = self.answer(run, token, uris, len(self.submitted))
        if isinstance(answer, BaseException):  # the task failed on the cluster
            return FakeFuture(answer)
        for message in answer:
            self.handlers[RESULTS_TOPIC]((time.time(), message))
        return FakeFuture()


def answers(run, token, uris, language="en", worker="worker", fingerprint=FINGERPRINT):
    """The event an honest worker sends: one result per file, naming it."""
    return {"run": run, "batch": token, "worker": worker, "fingerprint": fingerprint,
            "results": [FileResult(uri=u, language=language, confidence=0.9, agreement="single",
                                   duration=float(len(u))).to_dict() for u in uris]}


@pytest.fixture
def run(tmp_path):
    files = [f"/audio/{name}.wav" for name in ("a", "bb", "ccc", "dddd", "eeeee", "ffffff")]
    return Run.create("r", files, db=f"sqlite:///{tmp_path / 'ledger.db'}", models="null")


def execute(run, client, **settings):
    defaults = dict(batch_files=2, backoff_seconds=0.0, max_attempts=3)
    orchestrator = Orchestrator(run.ledger, run.name, client, RunSettings(**{**defaults, **settings}))
    progress = orchestrator.execute()
    return progress


def assert_every_file_holds_its_own_answer(run):
    frame = run.results()
    assert set(frame.state) == {"done"}, frame[["uri", "state", "error"]]
    assert (frame.duration == frame.uri.str.len()).all()  # each duration was made from its own uri
    assert run.status().counts["leased"] == 0


def test_stale_events_of_another_session_are_counted_and_ignored(run):
    def answer(name, token, uris, attempt):
        stale = answers(name, "token-of-a-dead-orchestrator", list(reversed(uris)), language="xx")
        return [stale, answers(name, token, uris)]

    client = FakeClient(answer)
    progress = execute(run, client)
    assert_every_file_holds_its_own_answer(run)
    assert set(run.results().language) == {"en"}
    assert progress.ignored == {"not a batch of this session": len(client.submitted)}


def test_results_are_paired_with_files_by_uri_not_by_position(run):
    progress = execute(run, FakeClient(lambda name, token, uris, _: [answers(name, token, list(reversed(uris)))]))
    assert_every_file_holds_its_own_answer(run)
    assert not progress.ignored


def test_a_duplicated_event_is_recorded_once(run):
    def answer(name, token, uris, attempt):
        return [answers(name, token, uris), answers(name, token, uris, language="de")]

    client = FakeClient(answer)
    progress = execute(run, client)
    assert_every_file_holds_its_own_answer(run)
    assert set(run.results().language) == {"en"}
    assert progress.ignored == {"not a batch of this session": len(client.submitted)}
    assert run.results().attempts.tolist() == [1] * 6


def test_partial_foreign_and_malformed_events_fail_nothing_else(run):
    """Batches 2-5 misbehave; the files they leave unanswered are retried, none stays leased."""
    def answer(name, token, uris, attempt):
        if attempt == 2:  # partial: only the first file answered
            return [answers(name, token, uris[:1])]
        if attempt == 3:  # one answer names a file outside the batch
            event = answers(name, token, uris)
            event["results"][0]["uri"] = "/audio/elsewhere.wav"
            return [event]
        if attempt == 4:  # malformed: no list of results
            return [{"run": name, "batch": token, "worker": "worker", "fingerprint": FINGERPRINT, "results": 7}]
        if attempt == 5:  # malformed: a word from no vocabulary
            event = answers(name, token, uris)
            event["results"][0]["error_kind"] = "gremlins"
            return [event]
        return [answers(name, token, uris)]

    client = FakeClient(answer)
    progress = execute(run, client, max_attempts=5)  # a file may land in each of the four bad batches
    assert_every_file_holds_its_own_answer(run)
    assert progress.ignored == {"names a file outside its batch": 1, "malformed event": 2}
    # Each misbehaviour cost the files it left unanswered one attempt, and nothing else was charged:
    # all but one file of the partial batch, the file whose answer named another, every file of
    # the malformed ones.
    sizes = [len(uris) for uris in client.submitted]
    assert run.results().attempts.sum() == 6 + (sizes[1] - 1) + 1 + sizes[3] + sizes[4]


def test_a_worker_that_never_answers_right_ends_with_dead_files_not_leased_ones(run):
    client = FakeClient(lambda name, token, uris, _: [answers(name, token, ["/nope.wav"])])
    progress = execute(run, client)
    frame = run.results()
    assert set(frame.state) == {"dead"} and set(frame.error_kind) == {"lost"}
    assert frame.error.str.contains("did not answer for this file").all()
    assert run.status().counts["leased"] == 0
    assert progress.ignored == {"names a file outside its batch": len(client.submitted)}
    assert sum(len(uris) for uris in client.submitted) == 6 * 3  # every file tried max_attempts times


def test_results_travel_as_plain_strings_in_worker_events():
    """A worker's log_event takes exact builtin types only (distributed's own check), no enum members."""
    from distributed.protocol.serialize import _is_dumpable

    from lid_dask.vocabulary import Agreement, ErrorKind, ReviewReason

    result = FileResult(uri="/a.wav", agreement=Agreement.SINGLE, review_reasons=(ReviewReason.NO_SPEECH,),
                        error_kind=ErrorKind.NO_SPEECH, error="no speech")
    assert _is_dumpable(answers("r", "t", ["/a.wav"])) and _is_dumpable(result.to_dict())
    assert FileResult.from_dict(result.to_dict()) == result
    assert result.answered and not result.ok


def test_a_batch_that_keeps_killing_workers_is_split_until_the_poison_file_is_alone(run):
    def answer(name, token, uris, attempt):
        if "/audio/ccc.wav" in uris:
            return KilledWorker("lid-batch", "tcp://127.0.0.1:1", allowed_failures=1)
        return [answers(name, token, uris)]

    client = FakeClient(answer)
    execute(run, client, batch_files=6)
    frame = run.results().set_index("uri")
    assert frame.loc["/audio/ccc.wav", "state"] == "dead"
    assert frame.loc["/audio/ccc.wav", "error_kind"] == "killed_worker"
    assert (frame.drop("/audio/ccc.wav").state == "done").all()
    with_poison = [len(uris) for uris in client.submitted if "/audio/ccc.wav" in uris]
    assert with_poison == sorted(with_poison, reverse=True) and with_poison[-1] == 1  # halved until alone
    assert with_poison.count(1) == POISON_VERDICTS and len(set(with_poison)) == len(with_poison) - 1


def test_a_file_blamed_once_alone_for_another_files_kill_is_tried_again(run):
    """Dask blames the batch waiting on a worker that another batch killed: one verdict alone is
    not enough to call a file poison."""
    blamed = []

    def answer(name, token, uris, attempt):
        if uris == ["/audio/bb.wav"] and not blamed:
            blamed.append(uris)
            return KilledWorker("lid-batch", "tcp://127.0.0.1:1", allowed_failures=1)
        return [answers(name, token, uris)]

    execute(run, FakeClient(answer), batch_files=1)
    frame = run.results().set_index("uri")
    assert blamed and (frame.state == "done").all()


def test_batches_are_split_by_bytes(tmp_path):
    sizes = [40, 50, 30, 90, 10, 5]
    claims = [Claim(i, f"/audio/{i}.wav", size, 1) for i, size in enumerate(sizes)]
    assert [[c.size for c in part] for part in _split_by_bytes(claims, 100)] == [[40, 50], [30], [90, 10], [5]]
    run = Run.create("bytes", [], db=f"sqlite:///{tmp_path / 'ledger.db'}", models="null")
    run.ledger.register(run.info.id, [(f"/audio/{i}.wav", size) for i, size in enumerate(sizes * 8)])
    client = FakeClient(lambda name, token, uris, _: [answers(name, token, uris)])
    execute(run, client, batch_files=6, batch_bytes=100)
    by_uri = {f"/audio/{i}.wav": size for i, size in enumerate(sizes * 8)}
    assert all(len(uris) == 1 or sum(by_uri[u] for u in uris) <= 100 for uris in client.submitted)
    assert run.status().counts["done"] == len(sizes) * 8


def test_a_drifted_workers_results_are_refused_and_its_batch_resubmitted(run):
    run.ledger.set_fingerprint(run.info.id, FINGERPRINT)
    drifted = {"packages": {"lid-dask": "another build"}}

    def answer(name, token, uris, attempt):
        if attempt % 2:  # every other batch lands on the drifted worker first
            return [answers(name, token, uris, language="xx", worker="tcp://drifted:1", fingerprint=drifted)]
        return [answers(name, token, uris, worker="tcp://good:1")]

    execute(run, FakeClient(answer), on_drift="refuse")
    assert_every_file_holds_its_own_answer(run)
    frame = run.results()
    assert set(frame.language) == {"en"} and set(frame.worker) == {"tcp://good:1"}
    workers = run.workers().set_index("name")
    assert workers.loc["tcp://drifted:1", "status"] == "flagged" and "another build" in workers.loc["tcp://drifted:1", "reason"]
    assert workers.loc["tcp://good:1", "status"] == "ok"


def test_a_batch_whose_results_never_arrive_is_resubmitted(run):
    client = FakeClient(lambda name, token, uris, attempt: [] if attempt == 1 else [answers(name, token, uris)])
    execute(run, client, event_grace_seconds=0.2)
    assert_every_file_holds_its_own_answer(run)
    assert client.submitted[0] == client.submitted[-1]  # the silent batch went out again, whole
    assert run.results().attempts.tolist() == [1] * 6  # the lease was kept: no attempt spent


def test_a_small_run_is_shared_out_over_the_workers_and_answers_early(tmp_path):
    """21 files on 2 worker threads: about four batches each, the first of each a quarter as big
    (before: one 32-file batch on one worker, and nothing to see until it ended)."""
    run = Run.create("small", [f"/audio/{i:02d}.wav" for i in range(21)], db=f"sqlite:///{tmp_path / 'l.db'}",
                     models="null")
    client = FakeClient(lambda name, token, uris, _: [answers(name, token, uris)], threads=2)
    execute(run, client, batch_files=32)
    sizes = [len(uris) for uris in client.submitted]
    assert sizes[:2] == [1, 1] and max(sizes) == 3 and sum(sizes) == 21
    assert len(sizes) >= 2 * 4
