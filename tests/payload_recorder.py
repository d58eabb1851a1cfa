"""Scheduler preload for tests: appends every task's pickled run spec (what the scheduler sends to
a worker) to the file named by $LID_TEST_PAYLOADS, so a test can search the payloads."""

from __future__ import annotations

import os

from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.protocol.pickle import dumps


class PayloadRecorder(SchedulerPlugin):
    def update_graph(self, scheduler, *, tasks, **kwargs):
        with open(os.environ["LID_TEST_PAYLOADS"], "ab") as out:
            for key in tasks:
                out.write(dumps(scheduler.tasks[key].run_spec) + b"\n")


def dask_setup(scheduler):
    scheduler.add_plugin(PayloadRecorder())
