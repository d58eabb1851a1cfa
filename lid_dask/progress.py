"""Progress bars that work in a terminal and in Jupyter (rich renders to both)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

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
