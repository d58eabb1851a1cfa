"""Command line: ``lid-dask identify FILES_OR_URLS...``.

The exit code is non-zero only when the command itself fails (bad options, a model that does not
load); files that cannot be identified are reported in the output with their reason.
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console

from lid_dask.models import DEFAULT_MODEL, available_backends


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lid-dask", description="Spoken language identification at archive scale.")
    commands = parser.add_subparsers(dest="command", required=True)

    ident = commands.add_parser("identify", help="identify the language of audio files",
                                description="Identify the language spoken in audio files, folders, globs or fsspec URLs.")
    ident.add_argument("sources", nargs="+", metavar="FILE_OR_URL")
    ident.add_argument("-m", "--model", action="append", dest="models", metavar="SPEC",
                       help=f"model spec, repeat for consensus (default {DEFAULT_MODEL}); "
                            f"backends: {', '.join(sorted(available_backends()))}")
    ident.add_argument("-w", "--windows", default="auto", metavar="PLAN",
                       help="window plan: auto | first | spread | whole, optionally :COUNTxLENGTH (default auto:3x10)")
    ident.add_argument("-l", "--languages", metavar="CODES",
                       help="comma-separated candidate languages; probabilities are renormalised over them")
    ident.add_argument("--vad", default="silero", choices=["silero", "energy", "none"], help="speech detector")
    ident.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ident.add_argument("-f", "--format", default="table", choices=["table", "csv", "jsonl"])
    ident.add_argument("-o", "--output", metavar="FILE", help="write results here instead of standard output")
    ident.add_argument("--storage-options", metavar="JSON", type=json.loads, default=None,
                       help='fsspec storage options, e.g. \'{"anon": true}\'')
    ident.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _identify(args) -> int:
    from lid_dask.engine import Identifier
    from lid_dask.progress import track
    from lid_dask.sources import expand_sources

    identifier = Identifier(models=args.models or [DEFAULT_MODEL], windows=args.windows,
                            languages=args.languages.split(",") if args.languages else None,
                            vad=args.vad, device=args.device, storage_options=args.storage_options)
    uris = list(expand_sources(args.sources, args.storage_options))
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "identify":
            return _identify(args)
    except (ValueError, RuntimeError, OSError) as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
