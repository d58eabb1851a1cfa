"""Command line: ``lid-dask COMMAND``; one module per family of commands, options declared once.

- `identify`: identify files in this process (`lid_dask.cli.identify`);
- `run`, `status`, `export`, `retry`, `db`: runs in the ledger (`lid_dask.cli.runs`);
- `evaluate`, `calibrate`, `calibration`, `review`: ground truth (`lid_dask.cli.evaluation`);
- `worker`, `scheduler`, `certs`, `health`: the cluster's processes (`lid_dask.cli.cluster`).

The exit code is non-zero only when the command itself fails (bad options, a model that does not
load, no ledger): files that cannot be identified are reported in the output with their reason.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version

from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from lid_dask.cli import cluster, evaluation, identify, runs

FAMILIES = (identify, runs, evaluation, cluster)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="lid-dask", description="Spoken language identification at archive scale.")
    root.add_argument("--version", action="version", version=f"lid-dask {version('lid-dask')}")
    commands = root.add_subparsers(dest="command", required=True)
    for family in FAMILIES:
        family.add_commands(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, RuntimeError, OSError, LookupError, SQLAlchemyError) as exc:
        error(exc)
        return 2


def error(exc: BaseException) -> None:
    """One line on stderr: the database's own message is its first line (no SQL, no traceback)."""
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if isinstance(exc, SQLAlchemyError) \
        else str(exc)
    prefix = "database error: " if isinstance(exc, SQLAlchemyError) else ""
    # soft wrap: paths stay whole; escaped: a message's [brackets] are text, not markup
    Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {prefix}{escape(message)}")


if __name__ == "__main__":
    sys.exit(main())
