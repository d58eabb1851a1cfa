"""The scheduler side: figures of the runs, added up as their orchestrators record answers.

Only what an orchestrator has written to its ledger is counted: after each recorded batch it sends
the batch's `summary` through the ``lid_dask_record`` handler. Workers are untrusted third-party
hosts (a stale or forged results event must not colour the figures, as it cannot reach the
ledger) and, on a TLS cluster, the worker role cannot call this handler (`lid_dask.security`).
Workers' own events still feed what only they know: each worker's environment fingerprint, seen
as it arrives (`log_event`). The scheduler never queries a database.

The plugin also bounds what the scheduler keeps of lid-dask's events: Dask keeps the last 1,000
events of each topic, and its stream to each client the last 1,000 messages it sent (both
``distributed.admin.low-level-log-length``), among them every results event forwarded to the
orchestrator that subscribed. Results events carry a batch's answers (kilobytes each, 20 MiB per
10,000 answers of the null model at batch 256 in benchmarks/monitor_overhead.py); the orchestrator
has them by the time they are logged, so only the last `EVENTS_KEPT` stay in either.
"""

from __future__ import annotations

import collections
import logging
import time
import weakref

from distributed.diagnostics.plugin import SchedulerPlugin

from lid_dask import fingerprint as fp
from lid_dask.figures import MONITOR_KEY, Distribution, RunFigures
from lid_dask.worker import FINGERPRINT_TOPIC, RESULTS_TOPIC

RUNS_KEPT = 20  # runs whose figures the scheduler holds (the least recently updated go first)
EVENTS_KEPT = 100
WORKERS_KEPT = 10_000

log = logging.getLogger(f"distributed.{__name__}")
plugins: weakref.WeakSet[MonitorPlugin] = weakref.WeakSet()  # every live one (tests start several)


class MonitorPlugin(SchedulerPlugin):
    name = "lid-dask-monitor"

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.runs: collections.OrderedDict[str, RunFigures] = collections.OrderedDict()
        self.fingerprints: collections.OrderedDict[str, dict] = collections.OrderedDict()  # worker address -> seen
        scheduler.handlers.update(lid_dask_record=self.record, lid_dask_baseline=self.set_baseline,
                                  lid_dask_session=self.session, lid_dask_figures=self.figures)
        scheduler.set_metadata(keys=MONITOR_KEY, value=1)
        plugins.add(self)
        self._warned_sends = False
        self._keep_few_events()

    # -- handlers (orchestrators and clients) -------------------------------------------------

    def record(self, run: str, summary: dict) -> None:
        """An orchestrator recorded a batch of `run` in its ledger."""
        self._run(run).add(summary)

    def session(self, run: str, active: bool, remaining: int | None = None) -> None:
        """An orchestrator session on `run` started or ended (a stopped run is not a stuck one)."""
        figures = self._run(run)
        figures.active = bool(active)
        if remaining is not None:
            figures.remaining = remaining

    def set_baseline(self, run: str, baseline: dict, source: str) -> None:
        """Compare `run` with an earlier run's figures (`Distribution.to_dict`) instead of its first files."""
        self._run(run).set_baseline(Distribution.from_dict(baseline), source)

    def figures(self, run: str | None = None) -> dict:
        """The figures of `run` (`RunFigures.to_dict`; empty if unknown), or of every run by name."""
        if run is not None:
            return self.runs[run].to_dict() if run in self.runs else {}
        return {name: figures.to_dict() for name, figures in self.runs.items()}

    # -- what workers send ----------------------------------------------------------------------

    def log_event(self, topic, msg) -> None:
        if topic not in (RESULTS_TOPIC, FINGERPRINT_TOPIC):
            return
        self._keep_few_sends(topic)
        if isinstance(msg, dict) and isinstance(msg.get("fingerprint"), dict):
            self._fingerprint(str(msg.get("worker")), msg["fingerprint"])

    def _keep_few_sends(self, topic: str) -> None:
        """Hold the streams to `topic`'s subscribers to logging their last `EVENTS_KEPT` sends: the
        log (distributed's ``BatchedSend.recent_message_log``, for debugging) holds the events
        forwarded to them, as many as the topic held before its own bound (pinned version; checked)."""
        try:
            for client in self.scheduler._broker._topics[topic].subscribers:
                stream = self.scheduler.client_comms.get(client)
                recent = getattr(stream, "recent_message_log", None)
                if recent is not None and (recent.maxlen is None or recent.maxlen > EVENTS_KEPT):
                    stream.recent_message_log = collections.deque(recent, maxlen=EVENTS_KEPT)
        except (AttributeError, KeyError, TypeError) as exc:
            if not self._warned_sends:
                log.warning("cannot bound the scheduler's log of the lid-dask events it sent (%s)", exc)
            self._warned_sends = True

    def _keep_few_events(self) -> None:
        """Hold lid-dask's topics to `EVENTS_KEPT` events. Dask offers no per-topic length, so this
        swaps the topic's deque inside distributed's event broker (pinned version; checked)."""
        try:
            topics = self.scheduler._broker._topics
            for topic in (RESULTS_TOPIC, FINGERPRINT_TOPIC):
                topics[topic].events = collections.deque(topics[topic].events, maxlen=EVENTS_KEPT)
        except (AttributeError, TypeError) as exc:
            log.warning("cannot bound the scheduler's lid-dask events (%s): it keeps Dask's default number", exc)

    def _fingerprint(self, address: str, environment: dict) -> None:
        self.fingerprints[address] = {"digest": fp.digest(environment), "seen": time.time()}
        self.fingerprints.move_to_end(address)
        while len(self.fingerprints) > WORKERS_KEPT:
            self.fingerprints.popitem(last=False)

    def _run(self, run: str) -> RunFigures:
        if run not in self.runs:
            self.runs[run] = RunFigures(run)
            while len(self.runs) > RUNS_KEPT:
                self.runs.popitem(last=False)
        self.runs.move_to_end(run)
        return self.runs[run]

    def latest_run(self) -> str | None:
        return next(reversed(self.runs), None)
