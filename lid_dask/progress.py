"""Progress bars that work in a terminal and in Jupyter (rich renders to both)."""

from __future__ import annotations

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
    """Live bar for a distributed run: files, audio hours, rate, ETA and failures."""

    def __init__(self, name: str, console=None):
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[hours]:.2f} h audio"), TextColumn("{task.fields[rate]:.1f} files/s"),
                   TextColumn("[red]{task.fields[failures]} failed"), TimeElapsedColumn(), TimeRemainingColumn()]
        self._bar = Progress(*columns, console=console or Console(stderr=True))  # stdout is for data
        self._task = self._bar.add_task(name, total=None, hours=0.0, rate=0.0, failures=0)

    def __enter__(self) -> RunProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self._bar.stop()

    def update(self, progress) -> None:
        self._bar.update(self._task, total=progress.total, completed=progress.finished,
                         hours=progress.audio_seconds / 3600, rate=progress.rate, failures=progress.failures)
