"""Command line: ``lid-dask COMMAND``; one module per family of commands, options declared once.

- `identify`: identify files in this process (`lid_dask.cli.identify`);
- `run`, `status`, `export`, `retry`, `db`: runs in the ledger (`lid_dask.cli.runs`);
- `evaluate`, `calibrate`, `review`: ground truth (`lid_dask.cli.evaluation`).

The exit code is non-zero only when the command itself fails (bad options, a model that does not
load, no ledger): files that cannot be identified are reported in the output with their reason.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from lid_dask.cli import evaluation, identify, runs

FAMILIES = (identify, runs, evaluation)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="lid-dask", description="Spoken language identification at archive scale.")
    commands = root.add_subparsers(dest="command", required=True)
    for family in FAMILIES:
        family.add_commands(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, RuntimeError, OSError, LookupError) as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {exc}")  # soft: paths stay whole
        return 2


if __name__ == "__main__":
    sys.exit(main())
