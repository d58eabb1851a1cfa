"""``lid-dask identify``: identify files in this process, no cluster, no ledger."""

from __future__ import annotations

import sys

from rich.console import Console

from lid_dask.cli import options


def add_commands(commands) -> None:
    ident = commands.add_parser("identify", help="identify the language of audio files",
                                description="Identify the language spoken in audio files, folders, globs or fsspec URLs.")
    ident.add_argument("sources", nargs="+", metavar="FILE_OR_URL")
    options.engine(ident, defaults=True)
    ident.add_argument("-f", "--format", default="table", choices=["table", "csv", "jsonl"])
    ident.add_argument("-o", "--output", metavar="FILE", help="write results here instead of standard output")
    ident.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ident.set_defaults(handler=identify)


def identify(args) -> int:
    from lid_dask.engine import Identifier
    from lid_dask.progress import track
    from lid_dask.sources import expand_sources

    identifier = Identifier(**options.engine_settings(args))
    uris = list(expand_sources(args.sources, args.storage_options, args.allowed_roots))
    results = identifier.iter_results(uris)
    if not args.no_progress:
        results = track(results, total=len(uris), console=Console(stderr=True))
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        _write(results, args.format, out)
    finally:
        if args.output:
            out.close()
    return 0


def _write(results, fmt: str, out) -> None:
    if fmt == "jsonl":  # streamed: a crash or Ctrl-C keeps what is done
        for result in results:
            out.write(result.to_json() + "\n")
            out.flush()
        return
    import pandas as pd

    frame = pd.DataFrame([r.to_row() for r in results])
    if fmt == "csv":
        frame.to_csv(out, index=False)
    else:
        _print_table(frame, out)


def _print_table(frame, out) -> None:
    import pandas as pd
    from rich.table import Table

    table = Table(show_lines=False)
    columns = ["uri", "language", "confidence", "agreement", "needs_review", "review_reasons", "error"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for values in frame.to_dict("records"):
        if isinstance(values.get("error_kind"), str):
            values["error"] = f"{values['error_kind']}: {values['error']}"
        table.add_row(*("" if pd.isna(values.get(c)) else str(values[c]) for c in columns))
    Console(file=out, width=200 if not out.isatty() else None).print(table)
