"""The orchestrator: the only process that writes the ledger, the one that drives a run.

It claims pending files in batches, keeps a bounded number of batch futures on the cluster
(backpressure: never millions of futures), and records each batch's results in one transaction
when the worker's results event arrives. Dask's own retries do not decide what is redone; the
ledger does:

- a worker lost mid-batch: Dask reruns the task elsewhere; a rerun's duplicate event is ignored;
- a batch cancelled by an earlier orchestrator still finishes on the long-lived cluster and sends
  its event: every batch carries a random token that no other batch, session or restart reuses,
  results are paired with claims by the file they name, and the ledger writes an answer only for
  a file this session leased. Anything else is counted (`Progress.ignored`), logged and dropped;
- a batch that keeps killing workers (KilledWorker) is split in halves until the poison file is
  alone, and that file is marked dead with its reason;
- an orchestrator crash: leases expire and the files go back to pending for the next run;
- a database restart: the ledger waits for the database to be back (`Ledger`, `transient`);
- Ctrl-C / SIGTERM: stop claiming, finish in-flight batches for a grace period, release the rest.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import math
import logging
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from distributed import Client
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from lid_dask import fingerprint as fp
from lid_dask.config import IdentifyConfig, reject_unknown
from lid_dask.figures import MONITOR_KEY, from_ledger, summary
from lid_dask.ledger import Claim, Ledger, Outcome
from lid_dask.ledger import schema
from lid_dask.results import FileResult
from lid_dask.vocabulary import ErrorKind
from lid_dask.worker import FINGERPRINT_TOPIC, RESULTS_TOPIC, identify_batch_task

log = logging.getLogger(__name__)
POISON_VERDICTS = 2  # KilledWorker verdicts on a file alone in its batch before it is dead


class RunLocked(RuntimeError):
    """Another orchestrator is processing this run."""


@dataclass
class RunSettings:
    """How the orchestrator paces and retries; the engine's settings travel in `identify`."""

    identify: IdentifyConfig = field(default_factory=IdentifyConfig)
    batch_files: int = 32
    batch_bytes: int = 512 * 2**20
    batches_in_flight: int | None = None  # default 2 per worker thread
    lease_seconds: float = 600.0
    max_attempts: int = 3
    backoff_seconds: float = 30.0
    drain_seconds: float = 30.0
    event_grace_seconds: float = 30.0  # a finished batch's results event may lag its task this long
    on_drift: str = "flag"  # flag | refuse
    drift_baseline: str | None = None  # an earlier run whose answers the monitor compares with
    resources: dict | None = None  # e.g. {"GPU": 1} to route batches to GPU workers

    @classmethod
    def from_config(cls, config: dict, **overrides) -> RunSettings:
        """A run's stored configuration (engine settings under "identify") with overrides."""
        values = {**config, **{k: v for k, v in overrides.items() if v is not None}}
        identify = values.pop("identify", {})
        reject_unknown(cls, values, "run setting")
        return cls(identify=identify if isinstance(identify, IdentifyConfig) else IdentifyConfig.from_dict(identify),
                   **values)


@dataclass
class Progress:
    """What a progress display needs, updated after every recorded batch."""

    counts: dict
    done_this_session: int = 0
    audio_seconds: float = 0.0
    failures: int = 0
    ignored: Counter = field(default_factory=Counter)  # answers not recorded, by reason
    stopped: bool = False  # ended by stop() (Ctrl-C, SIGTERM), not by running out of work
    released: int = 0  # files in flight given back to pending when it stopped
    first_finish: float | None = None  # monotonic time of this session's first recorded batch
    after_first: int = 0  # files recorded after it

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        return self.counts.get(schema.DONE, 0) + self.counts.get(schema.DEAD, 0)

    @property
    def remaining(self) -> int:
        return self.total - self.finished

    @property
    def rate(self) -> float:
        """Files/s as `Run.status` measures it: from this session's first finished batch, counting
        only the files finished after it (their work started before it); NaN until then."""
        if self.first_finish is None or not self.after_first:
            return math.nan
        return self.after_first / max(time.monotonic() - self.first_finish, 1e-9)

    @property
    def eta(self) -> float | None:
        """Seconds to go at `rate`; None while the pace is unknown."""
        return self.remaining / self.rate if self.rate > 0 else None

    def record(self, files: int) -> None:
        if self.first_finish is None:
            self.first_finish = time.monotonic()
        else:
            self.after_first += files
        self.done_this_session += files


@dataclass
class _Batch:
    token: str  # random: an answer must quote it, and no other batch of any session has it
    claims: list[Claim]
    future: object
    submitted: float
    finished_at: float | None = None  # when the future finished; the event may lag behind


class Orchestrator:
    """Drive one run of the ledger on a Dask cluster until no work is left (see module docstring)."""

    def __init__(self, ledger: Ledger, run_name: str, client: Client, settings: RunSettings | None = None,
                 on_progress: Callable[[Progress], None] | None = None,
                 on_stop: Callable[[int, float, bool], None] | None = None):
        """`on_progress(progress)` after every recorded batch (and once at the start);
        `on_stop(files_in_flight, drain_seconds, releasing_now)` at once when asked to stop."""
        self.ledger = ledger
        self.run = ledger.get_run(run_name)
        self.client = client
        self.settings = settings or RunSettings.from_config(self.run.config)
        self.on_progress = on_progress
        self.on_stop = on_stop
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._config_json = self.settings.identify.to_json()
        self._events: queue.Queue = queue.Queue()
        self._batches: dict[str, _Batch] = {}
        self._stop = threading.Event()
        self._release_now = threading.Event()
        self._submitted = 0
        self._reference = self.run.fingerprint
        self._workers_seen: dict[str, str] = {}
        self._worker_drift: dict[str, list[str]] = {}
        self._killed_alone: Counter = Counter()  # file id -> KilledWorker verdicts on its batch alone
        self._monitored = False  # the scheduler has lid_dask.monitor: recorded batches are reported to it
        self._in_flight_reports: list[concurrent.futures.Future] = []
        self._refused_in_a_row = 0
        self.progress = Progress(counts=ledger.counts(self.run.id))

    # -- public -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the run to stop (what Ctrl-C and SIGTERM do): no new batches, and those in flight
        may finish for `drain_seconds`; asked again, they are released at once."""
        again = self._stop.is_set()
        self._stop.set()
        if again:
            self._release_now.set()
        if self.on_stop:
            self.on_stop(sum(len(b.claims) for b in self._batches.values()), self.settings.drain_seconds, again)

    def execute(self) -> Progress:
        """Process the run until every file is done or dead, or until `stop()`."""
        if not self._acquire_lock():
            holder, until = self.ledger.lock_holder(self.run.id)
            raise RunLocked(f"run {self.run.name!r} is being processed by {holder} (lock until {until:%H:%M:%S} UTC);"
                            " wait for it, or for the lock to expire if that orchestrator died")
        restore = self._install_signal_handlers()
        for topic in (RESULTS_TOPIC, FINGERPRINT_TOPIC):
            self.client.subscribe_topic(topic, functools.partial(self._on_event, topic))
        try:
            self.ledger.expire_leases(self.run.id)
            self._monitored = self.client.get_metadata(MONITOR_KEY, default=None) is not None
            self._tell_monitor("lid_dask_session", active=True)
            if self._monitored and self.settings.drift_baseline:
                self._send_baseline(self.settings.drift_baseline)
            self.progress.counts = self.ledger.counts(self.run.id)
            if self.on_progress:
                self.on_progress(self.progress)  # the total is known before the first batch ends
            self._loop()
        finally:
            try:
                self._wind_down()  # still subscribed: the batches it waits for answer by event
            finally:
                self.client.unsubscribe_topic(RESULTS_TOPIC)
                self.client.unsubscribe_topic(FINGERPRINT_TOPIC)
                restore()
        self.progress.counts = self.ledger.counts(self.run.id)
        self._tell_monitor("lid_dask_session", active=False, remaining=self._remaining())
        return self.progress

    def _acquire_lock(self) -> bool:
        """Take the run lock; a lock left by a dead orchestrator on this host is taken over at once."""
        if self.ledger.acquire_lock(self.run.id, self.owner, self.settings.lease_seconds):
            return True
        holder, _ = self.ledger.lock_holder(self.run.id)
        if holder and _is_dead_local_process(holder):
            freed = self.ledger.take_over(self.run.id, holder)
            log.warning("orchestrator %s died; took over its run and %d leased files", holder, freed)
            return self.ledger.acquire_lock(self.run.id, self.owner, self.settings.lease_seconds)
        return False

    def _on_event(self, topic: str, event: tuple) -> None:
        """Called by the client for each event of `topic`; the loop thread handles it."""
        self._events.put((topic, event))

    # -- the loop ---------------------------------------------------------------------------

    def _loop(self) -> None:
        in_flight = self.settings.batches_in_flight or max(2, 2 * sum(self.client.nthreads().values()))
        if self.settings.resources is None and _cluster_has_gpus(self.client):
            self.settings.resources = {"GPU": 1}  # route batches to GPU workers only
        last_housekeeping = 0.0
        exhausted = False
        while True:
            if not self._stop.is_set() and len(self._batches) < in_flight:
                exhausted = not self._submit_more(in_flight)
            self._drain_events(timeout=0.05 if self._batches else 0)
            self._check_futures()
            now = time.monotonic()
            if now - last_housekeeping > min(30.0, self.settings.lease_seconds / 4):
                self._housekeeping()
                last_housekeeping = now
            if self._stop.is_set() or (exhausted and not self._batches):
                if self._stop.is_set() or not self._waiting_for_retries():
                    return

    def _submit_more(self, in_flight: int) -> bool:
        """Keep `in_flight` batches on the cluster; False when the ledger has nothing to claim now."""
        while len(self._batches) < in_flight:
            claims = self.ledger.claim(self.run.id, self.owner, self._batch_size(), self.settings.lease_seconds)
            if not claims:
                return False
            for part in _split_by_bytes(claims, self.settings.batch_bytes):
                self._submit(part)
        return True

    def _batch_size(self) -> int:
        """Files to claim for the next batch: at most `batch_files`, few enough that every worker
        thread gets about four batches of a small run, and a quarter of that for the first batch
        of each thread, so that answers (and the progress bar) come early."""
        threads = max(1, sum(self.client.nthreads().values()))
        to_do = self.progress.counts.get(schema.PENDING, 0) + self.progress.counts.get(schema.FAILED, 0)
        size = min(self.settings.batch_files, max(1, math.ceil(to_do / (4 * threads))))
        return max(1, size // 4) if self._submitted < threads else size

    def _submit(self, claims: list[Claim]) -> None:
        # The task key is public (dashboard, scheduler state); the token travels only to the worker.
        token = uuid.uuid4().hex
        future = self.client.submit(identify_batch_task, self.run.name, token, [c.uri for c in claims],
                                    self._config_json, key=f"lid-batch-{uuid.uuid4().hex}",
                                    resources=self.settings.resources, pure=False)
        self._batches[token] = _Batch(token, claims, future, time.monotonic())
        self._submitted += 1

    def _drain_events(self, timeout: float) -> None:
        try:
            event = self._events.get(timeout=timeout) if timeout else self._events.get_nowait()
        except queue.Empty:
            return
        while True:
            topic, (_, message) = event
            if topic == RESULTS_TOPIC:
                self._on_results(message)
            elif isinstance(message, dict) and isinstance(message.get("fingerprint"), dict):
                self._on_fingerprint(str(message.get("worker")), message["fingerprint"])
            else:
                self._ignore("malformed event", "a malformed fingerprint event: %.200r", message)
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return

    def _on_results(self, message) -> None:
        if not isinstance(message, dict) or message.get("run") != self.run.name:
            return  # another run sharing the cluster
        batch = self._batches.get(message.get("batch"))
        if batch is None:  # an earlier orchestrator's cancelled batch, or a rerun's duplicate
            self._ignore("not a batch of this session", "a results event for a batch this orchestrator did not "
                         "issue or already recorded (worker %s)", message.get("worker"))
            return
        try:
            worker = str(message["worker"])
            environment = dict(message["fingerprint"])
            results = [FileResult.from_dict(r) for r in message["results"]]
        except (KeyError, TypeError, ValueError) as exc:
            self._ignore("malformed event", "a malformed results event for batch %s: %s", batch.token[:8], exc)
            self._record(batch, [])  # its files are answered as lost below, and retried
            return
        if not self._on_fingerprint(worker, environment):
            self._refused_in_a_row += 1
            if self._refused_in_a_row > 3 * max(1, len(self._workers_seen)):
                raise RuntimeError("every worker differs from the run's environment (see `lid-dask status`); "
                                   "fix the image or rerun with --on-drift flag")
            log.warning("refusing results of drifted worker %s; the batch is resubmitted", worker)
            self._resubmit(batch)
            return
        self._refused_in_a_row = 0
        claims = {c.uri: c for c in batch.claims}
        outcomes = []
        for result in results:
            claim = claims.pop(result.uri, None)
            if claim is None:
                self._ignore("names a file outside its batch", "worker %s answered for %r, which batch %s does not "
                             "hold", worker, result.uri, batch.token[:8])
                continue
            outcomes.append(Outcome(claim.file_id, result, worker=worker))
        self.progress.audio_seconds += sum(o.result.duration or 0.0 for o in outcomes)
        self._record(batch, outcomes, worker)

    def _on_fingerprint(self, worker: str, environment: dict) -> bool:
        """Record a worker's fingerprint; False if it drifted and the run refuses drifted workers."""
        digest = fp.digest(environment)
        if self._reference is None:
            self._reference = environment
            self.ledger.set_fingerprint(self.run.id, environment)
        drift = fp.differences(self._reference, environment)
        self._worker_drift[worker] = drift
        if self._workers_seen.get(worker) != digest:
            self._workers_seen[worker] = digest
            status = "flagged" if drift else "ok"
            self.ledger.record_worker(self.run.id, worker, environment, status,
                     "; ".join(drift) or None)
            if drift:
                log.warning("worker %s differs from the run's environment: %s", worker, "; ".join(drift))
        return not (drift and self.settings.on_drift == "refuse")

    def _check_futures(self) -> None:
        for batch in list(self._batches.values()):
            status = batch.future.status
            if status == "error":
                self._on_error(batch)
            elif status == "cancelled":
                self._resubmit(batch)
            elif status == "finished":
                # The event travels a different path than the task state; give it time to arrive.
                batch.finished_at = batch.finished_at or time.monotonic()
                if time.monotonic() - batch.finished_at > self.settings.event_grace_seconds:
                    log.warning("batch %s finished but its results never arrived; resubmitting", batch.token[:8])
                    self._resubmit(batch)

    def _on_error(self, batch: _Batch) -> None:
        try:
            error = batch.future.exception(timeout=5)
        except (FutureCancelledError, TimeoutError) as exc:
            error = exc
        if isinstance(error, KilledWorker):
            self._batches.pop(batch.token)
            if len(batch.claims) == 1:
                claim = batch.claims[0]
                self._killed_alone[claim.file_id] += 1
                if self._killed_alone[claim.file_id] < POISON_VERDICTS:
                    # Dask also blames a batch waiting on a worker that another batch killed: a file
                    # alone in its batch is poison only if that happens to it again.
                    log.warning("the batch of file %s alone was on workers that died; trying it once more", claim.uri)
                    self._submit([claim])
                    return
                self._record_outcomes([Outcome(claim.file_id, None, error_kind=ErrorKind.KILLED_WORKER, error=(
                    f"processing this file alone killed the worker process "
                    f"{POISON_VERDICTS * (1 + _allowed_failures())} times; isolated as a poison file"))])
                return
            half = len(batch.claims) // 2
            log.warning("batch %s keeps killing workers; splitting %d files to find the cause",
                        batch.token[:8], len(batch.claims))
            self._submit(batch.claims[:half])
            self._submit(batch.claims[half:])
            return
        # Any other exception is a bug or a broken configuration, not a bad file: stop loudly.
        raise RuntimeError(f"batch {batch.token[:8]} failed on the cluster: {type(error).__name__}: {error}") from error

    def _resubmit(self, batch: _Batch) -> None:
        self._batches.pop(batch.token, None)
        batch.future.release()
        self._submit(batch.claims)

    def _record(self, batch: _Batch, outcomes: list[Outcome], worker: str | None = None) -> None:
        """Record a batch's answers; its files without one are lost this time, and retried."""
        answered = {o.file_id for o in outcomes}
        outcomes = outcomes + [Outcome(c.file_id, None, worker=worker, error_kind=ErrorKind.LOST, retryable=True,
                             error="the batch's results event did not answer for this file")
                     for c in batch.claims if c.file_id not in answered]
        self._record_outcomes(outcomes)
        self._batches.pop(batch.token, None)
        batch.future.release()

    def _record_outcomes(self, outcomes: list[Outcome]) -> None:
        refused = self.ledger.record(outcomes, self.owner, self.settings.max_attempts,
                           self.settings.backoff_seconds)
        for refusal in refused:
            self._ignore("refused by the ledger", "not recorded for file %d (%s): %s", refusal.file_id, refusal.uri,
                         refusal.reason)
        refused_ids = {r.file_id for r in refused}
        recorded = [o for o in outcomes if o.file_id not in refused_ids]
        self.progress.record(len(recorded))
        self.progress.failures += sum(1 for o in recorded if o.result is None or not o.result.answered)
        self.progress.counts = self.ledger.counts(self.run.id)  # a few rows of the counter table
        if self._monitored and recorded:
            self._report(recorded)
        if self.on_progress:
            self.on_progress(self.progress)

    def _send_baseline(self, run_name: str) -> None:
        """Have the monitor compare this run with `run_name`'s answers instead of its first files."""
        figures = from_ledger(self.ledger, self.run.id, self.ledger.get_run(run_name).id)
        self._tell_monitor("lid_dask_baseline", baseline=figures["baseline"], source=f"run {run_name}")

    def _report(self, recorded: list[Outcome]) -> None:
        """Send the monitor the counts of what the ledger just accepted (never a worker's word)."""
        batch = summary([o.result for o in recorded], [o.error_kind for o in recorded if o.result is None],
                        remaining=self._remaining(),
                        workers={o.worker: self._worker_drift.get(o.worker, []) for o in recorded if o.worker})
        self._tell_monitor("lid_dask_record", wait=False, summary=batch)

    def _remaining(self) -> int:
        counts = self.progress.counts
        return sum(counts.get(state, 0) for state in (schema.PENDING, schema.LEASED, schema.FAILED))

    def _tell_monitor(self, handler: str, wait: bool = True, **message) -> None:
        """Call a handler of the scheduler's monitor, if it has one; its failure never stops a run.

        Batch figures go without waiting for the reply: a blocking round trip per batch cost a
        null-backend run 6.6% of its time (benchmarks/monitor_overhead.py). A call that waits
        (a session's start and end) first lets those still in flight arrive, so the last word on
        a run is the session's.
        """
        if not self._monitored:
            return
        call = getattr(self.client.scheduler, handler)(run=self.run.name, **message)
        self._in_flight_reports.append(asyncio.run_coroutine_threadsafe(call, self.client.loop.asyncio_loop))
        for report in [r for r in self._in_flight_reports if wait or r.done()]:
            self._settle(report)
        self._in_flight_reports = [r for r in self._in_flight_reports if not r.done()]

    def _settle(self, report: concurrent.futures.Future) -> None:
        """Wait for a call to the monitor; if it failed, say so once and stop telling the monitor."""
        try:
            report.result(timeout=30)
        except Exception as exc:  # noqa: BLE001 - the figures are a view; the ledger has the answers
            if self._monitored:
                log.warning("the monitor did not take a report (%s); it stops being told", exc)
            self._monitored = False

    def _ignore(self, reason: str, message: str, *args) -> None:
        """Count and log an answer that is not recorded."""
        self.progress.ignored[reason] += 1
        log.warning("ignored: " + message, *args)

    def _housekeeping(self) -> None:
        """Renew the run lock and the leases of in-flight files."""
        if not self.ledger.acquire_lock(self.run.id, self.owner, self.settings.lease_seconds):
            raise RunLocked(f"lost the lock on run {self.run.name!r} to another orchestrator")
        in_flight = [c.file_id for b in self._batches.values() for c in b.claims]
        self.ledger.extend_leases(in_flight, self.owner, self.settings.lease_seconds)

    def _waiting_for_retries(self) -> bool:
        """True (after a short sleep) while failed files wait for their backoff to pass."""
        counts = self.ledger.counts(self.run.id)
        if counts[schema.FAILED] == 0 and counts[schema.PENDING] == 0:
            return False
        self._stop.wait(min(5.0, self.settings.backoff_seconds))
        return True

    def _wind_down(self) -> None:
        """Stop: wait briefly for in-flight batches, then give their files back to pending."""
        self.progress.stopped = self._stop.is_set()
        deadline = time.monotonic() + (self.settings.drain_seconds if self._stop.is_set() else 0)
        while self._batches and time.monotonic() < deadline and not self._release_now.is_set():
            self._drain_events(timeout=0.2)
            self._check_futures_quietly()
        leftover = [c.file_id for b in self._batches.values() for c in b.claims]
        for batch in self._batches.values():
            batch.future.cancel()
        if leftover:
            self.progress.released = self.ledger.release(leftover, self.owner)
            log.info("released %d in-flight files back to pending", len(leftover))
        self._batches.clear()
        self.ledger.release_lock(self.run.id, self.owner)

    def _check_futures_quietly(self) -> None:
        try:
            self._check_futures()
        except RuntimeError as exc:
            log.error("%s", exc)

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, lambda *_: self.stop())

        def restore():
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore


def _cluster_has_gpus(client: Client) -> bool:
    workers = client.scheduler_info().get("workers", {}).values()
    return any(w.get("resources", {}).get("GPU") for w in workers)


def _is_dead_local_process(owner: str) -> bool:
    """True if `owner` (host:pid:token) names a process of this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def _allowed_failures() -> int:
    import dask

    return int(dask.config.get("distributed.scheduler.allowed-failures"))


def _split_by_bytes(claims: list[Claim], limit: int) -> list[list[Claim]]:
    """Split a claim into batches of at most `limit` bytes (unknown sizes count as zero)."""
    batches, current, size = [], [], 0
    for claim in claims:
        if current and size + (claim.size or 0) > limit:
            batches.append(current)
            current, size = [], 0
        current.append(claim)
        size += claim.size or 0
    return [*batches, current] if current else batches
