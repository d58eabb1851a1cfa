"""Progress bars that work in a terminal and in Jupyter (rich renders to both)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lid_dask.results import FileResult


def track(results: Iterable[FileResult], total: int | None, description: str = "identifying",
          console=None) -> Iterator[FileResult]:
    """Yield `results` while showing files done, failures, rate and ETA."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[failed]} failed"), TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total, failed=0, rate="")
        failed = 0
        for result in results:
            failed += not result.ok
            bar.update(task, advance=1, failed=failed)
            elapsed = bar.tasks[0].elapsed or 0
            if elapsed > 0:
                bar.update(task, rate=f"{bar.tasks[0].completed / elapsed:.1f} files/s")
            yield result


class RunProgress:
    """Live bar for a distributed run: files of the whole run (its total known from the start),
    pace and ETA measured as `lid-dask status` measures them, and failures."""

    def __init__(self, name: str, console=None):
        # Fits an 80-column terminal: the run's name is in the line printed before the bar.
        columns = [BarColumn(bar_width=16), MofNCompleteColumn(), TextColumn("{task.fields[pace]}"),
                   TextColumn("[red]{task.fields[failures]} failed"), TimeElapsedColumn(),
                   TextColumn("{task.fields[eta]}")]
        self._bar = Progress(*columns, console=console or Console(stderr=True))  # stdout is for data
        self._task = self._bar.add_task(name, total=None, pace="", failures=0, eta="")

    def __enter__(self) -> RunProgress:
        return self  # the bar is drawn on the first update, which brings the run's total

    def __exit__(self, *exc) -> None:
        self._bar.stop()

    def update(self, progress) -> None:
        pace = "pace: next batch" if math.isnan(progress.rate) else f"{progress.rate * 60:.0f} files/min"
        eta = f"ETA {dt.timedelta(seconds=round(progress.eta))}" if progress.eta is not None else ""
        self._bar.update(self._task, total=progress.total, completed=progress.finished, pace=pace,
                         failures=progress.failures, eta=eta)
        if not self._bar.live.is_started:
            self._bar.start()
