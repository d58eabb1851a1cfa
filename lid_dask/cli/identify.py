"""``lid-dask identify``: identify files in this process, no cluster, no ledger."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape

from lid_dask.cli import options


def add_commands(commands) -> None:
    ident = commands.add_parser("identify", help="identify the language of audio files",
                                description="Identify the language spoken in audio files, folders, globs or fsspec URLs.")
    ident.add_argument("sources", nargs="+", metavar="FILE_OR_URL")
    options.engine(ident, defaults=True)
    ident.add_argument("-f", "--format", choices=["table", "csv", "jsonl"],
                       help="default: from the output's extension (.csv, .jsonl), else a table")
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
        _write(results, args.format or output_format(args.output), out)
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


def output_format(path: str | None) -> str:
    """The format an output's name asks for: .csv, .jsonl (or .json, .ndjson), else a table."""
    name = (path or "").lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "table"


def _print_table(frame, out) -> None:
    """A table for people: the file's name (not its whole path) and the answer, within the
    terminal's width (80 columns when not a terminal)."""
    import pandas as pd
    from rich.table import Table

    table = Table(show_lines=False)
    table.add_column("file", no_wrap=True)
    for column in ("language", "conf.", "agreement", "notes"):
        table.add_column(column, overflow="fold", min_width=len(column))
    for values in frame.to_dict("records"):
        name = _shorten(str(values["uri"]).rstrip("/").rsplit("/", 1)[-1], 30)
        confidence = "" if pd.isna(values.get("confidence")) else f"{values['confidence']:.2f}"
        note = (f"{values['error_kind']}: {values['error']}" if isinstance(values.get("error_kind"), str)
                else values.get("review_reasons") or "")
        table.add_row(escape(name), str(values.get("language") or ""), confidence, str(values.get("agreement") or ""),
                      escape(note))
    Console(file=out, width=None if out.isatty() else 80).print(table)


def _shorten(name: str, width: int) -> str:
    """``long-recording-name-0001.flac`` -> ``long-recordi…e-0001.flac``: both ends stay readable."""
    if len(name) <= width:
        return name
    keep = width - 1
    return f"{name[:keep // 2]}…{name[len(name) - (keep - keep // 2):]}"

