"""Command line: ``lid-dask identify FILES_OR_URLS...``.

The exit code is non-zero only when the command itself fails (bad options, a model that does not
load); files that cannot be identified are reported in the output with their reason.
"""

from __future__ import annotations

import argparse
import json
import math
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
    _access_options(ident)
    ident.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    run = commands.add_parser("run", help="run (or resume) a distributed, resumable job over many files",
                              description="Register SOURCES in a run and process it on a Dask cluster. "
                                          "Rerunning the same command resumes; new files join the run.")
    run.add_argument("sources", nargs="*", metavar="SOURCE",
                     help="files, folders, globs, fsspec URLs (s3://bucket/prefix), manifests (CSV/Parquet), "
                          "S3 Inventory manifest.json")
    run.add_argument("--name", help="run name (default: a new name from the time; give it to resume)")
    _db_option(run)
    run.add_argument("--scheduler", metavar="ADDR", help="tcp:// or tls:// address of a Dask scheduler "
                                                         "(default: a local cluster)")
    run.add_argument("--tls-ca", help="CA certificate for tls://")
    run.add_argument("--tls-cert", help="client certificate for tls://")
    run.add_argument("--tls-key", help="client key for tls://")
    run.add_argument("--workers", type=int, help="local cluster: number of worker processes")
    run.add_argument("-m", "--model", action="append", dest="models", metavar="SPEC")
    run.add_argument("-w", "--windows", metavar="PLAN")
    run.add_argument("-l", "--languages", metavar="CODES")
    run.add_argument("--vad", choices=["silero", "energy", "none"])
    run.add_argument("--device", help="auto | cpu | cuda")
    run.add_argument("--batch-files", type=int, help="files per batch (default 32)")
    run.add_argument("--max-attempts", type=int, help="attempts before a transient failure is dead (default 3)")
    run.add_argument("--on-drift", choices=["flag", "refuse"], help="workers whose environment differs")
    run.add_argument("--storage-options", metavar="JSON", type=json.loads, default=None)
    _access_options(run)
    run.add_argument("--no-progress", action="store_true")

    status = commands.add_parser("status", help="counts by state, rate, ETA and top errors of a run")
    status.add_argument("name", nargs="?", help="run name (default: list the runs)")
    _db_option(status)

    export = commands.add_parser("export", help="write a run's results to Parquet or CSV")
    export.add_argument("name")
    export.add_argument("-o", "--output", help="file or fsspec URL (default RUN.parquet / RUN.csv)")
    export.add_argument("-f", "--format", default="parquet", choices=["parquet", "csv"])
    _db_option(export)

    retry = commands.add_parser("retry", help="send failed and dead files of a run back to pending")
    retry.add_argument("name")
    retry.add_argument("--kind", action="append", dest="kinds", metavar="ERROR_KIND",
                       help="only files that failed with this error kind (repeatable)")
    _db_option(retry)

    evaluate = commands.add_parser("evaluate", help="evaluate a run, or models, against ground truth",
                                   description="Join predictions to labels; per-language metrics, calibration, "
                                               "consensus value; compare with the previous evaluation.")
    _labels_options(evaluate)
    what = evaluate.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", help="evaluate this existing run")
    what.add_argument("-m", "--model", action="append", dest="models", metavar="SPEC",
                      help="run these models over the labelled files first (repeatable)")
    evaluate.add_argument("--dataset", help="name of the labelled set, for comparisons (default: the labels path)")
    evaluate.add_argument("--report", metavar="DIR", help="write report.md, report.html and plots here")
    evaluate.add_argument("--fail-on-regression", type=float, metavar="DROP",
                          help="exit 3 if any language drops by more than DROP (e.g. 0.02), significantly")
    evaluate.add_argument("--scheduler", metavar="ADDR")
    evaluate.add_argument("--workers", type=int)
    _db_option(evaluate)

    calibrate = commands.add_parser("calibrate", help="fit each model's confidence calibration on labelled data")
    _labels_options(calibrate)
    calibrate.add_argument("--run", required=True, help="a run over labelled files")
    calibrate.add_argument("--dataset", help="name of the labelled set (default: the labels path)")
    _db_option(calibrate)

    review = commands.add_parser("review", help="export files that need a person; import their answers")
    review_commands = review.add_subparsers(dest="review_command", required=True)
    export_review = review_commands.add_parser("export", help="CSV of files to review, with links to listen")
    export_review.add_argument("name", help="run name")
    export_review.add_argument("-o", "--output", required=True)
    _db_option(export_review)
    import_review = review_commands.add_parser("import", help="store reviewed languages as ground truth")
    import_review.add_argument("path", help="the exported CSV with reviewed_language filled in")
    import_review.add_argument("--dataset", default="reviewed",
                               help="ground-truth name; evaluate with --labels db:NAME (default reviewed)")
    _db_option(import_review)
    db = commands.add_parser("db", help="the ledger database itself")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="create the ledger's tables or upgrade its schema to this "
                                                     "lid-dask's (runs do it too; other commands never do)")
    _db_option(upgrade)
    return parser


def _access_options(parser) -> None:
    parser.add_argument("--allow-root", action="append", dest="allowed_roots", default=[], metavar="ROOT",
                        help="a folder, bucket (s3://bucket) or host (https://host) that manifests may name besides "
                             "the sources' own (repeatable)")
    parser.add_argument("--allow-private-network", nargs="*", metavar="CIDR", default=None,
                        help="let HTTP(S) audio come from private, loopback or link-local addresses: all of them, "
                             "or only these networks (e.g. 10.1.0.0/16)")


def _private_network(args) -> bool | list[str]:
    """--allow-private-network: absent False, alone True, with networks those networks."""
    if args.allow_private_network is None:
        return False
    return args.allow_private_network or True


def _labels_options(parser) -> None:
    parser.add_argument("--labels", required=True, metavar="PATH",
                        help="Common Voice folder, VoxLingua107-style folders, FLEURS folder, CSV/Parquet with "
                             "uri+language, or db:NAME for reviewed labels")
    parser.add_argument("--label-format", default="auto",
                        choices=["auto", "commonvoice", "fleurs", "voxlingua", "table"])
    parser.add_argument("--split", default="test", help="split of Common Voice / FLEURS (default test)")


def _db_option(parser) -> None:
    parser.add_argument("--db", default=None, metavar="URL",
                        help="ledger database URL, e.g. postgresql+psycopg://user@host/db "
                             "(default $LID_DASK_DB or sqlite:///lid-dask.db)")


def _db(args) -> str:
    import os

    from lid_dask.ledger.ledger import DEFAULT_URL

    return args.db or os.environ.get("LID_DASK_DB", DEFAULT_URL)


def _run(args) -> int:
    from lid_dask.cluster import connect
    from lid_dask.ledger import Ledger
    from lid_dask.runs import Run
    from lid_dask.storage import local_worker_environment, split_secrets

    options = dict(models=args.models, windows=args.windows, vad=args.vad, device=args.device,
                   languages=args.languages, storage_options=args.storage_options,
                   allow_private_network=_private_network(args) or None)
    settings = dict(batch_files=args.batch_files, max_attempts=args.max_attempts, on_drift=args.on_drift)
    settings = {k: v for k, v in settings.items() if v is not None}
    ledger = Ledger(_db(args))
    if args.name and args.name in {r.name for r in ledger.list_runs()}:
        run = Run(args.name, ledger=ledger, storage_options=args.storage_options)
        added = run.add(args.sources, allowed_roots=args.allowed_roots) if args.sources else 0
    else:
        if not args.sources:
            raise ValueError("a new run needs at least one SOURCE")
        run = Run.create(args.name, [], _db(args), **{k: v for k, v in options.items() if v is not None}, **settings)
        added = run.add(args.sources, allowed_roots=args.allowed_roots)
    console = Console(stderr=True)
    console.print(f"run [bold]{run.name}[/bold] in {ledger.url_for_display}: {added} new files")
    _, secret = split_secrets(args.storage_options)
    if secret:
        reach = ("the local workers get them through their environment" if not args.scheduler else
                 "remote workers read the audio with credentials from their own environment "
                 "(LID_DASK_STORAGE_OPTIONS, FSSPEC_*, AWS_*: see cluster/README.md)")
        console.print(f"storage credentials ({', '.join(sorted(secret))}) were used here for listing only and "
                      f"are not stored in the ledger; {reach}")
    security = None
    if args.scheduler and args.scheduler.startswith("tls://"):
        from lid_dask.security import client_security

        security = client_security(args.tls_ca, args.tls_cert, args.tls_key)
    client = connect(args.scheduler, security=security, n_workers=args.workers, env=local_worker_environment(secret))
    try:
        progress = run.execute(client, progress=not args.no_progress, **settings)
    finally:
        cluster = client.cluster
        client.close()
        if cluster is not None:
            cluster.close()
    _print_status(run.status(), console)
    if progress.ignored:
        console.print(f"[yellow]{sum(progress.ignored.values())} answers were not recorded[/yellow] (not this "
                      "session's to record; see the log): " + ", ".join(f"{reason} ({n})"
                                                                     for reason, n in progress.ignored.items()))
    return 0


def _status(args) -> int:
    from lid_dask.ledger import Ledger
    from lid_dask.runs import Run

    ledger = Ledger.existing(_db(args))
    console = Console()
    if not args.name:
        for info in ledger.list_runs():
            console.print(info.name)
        return 0
    run = Run(args.name, ledger=ledger)
    _print_status(run.status(), console)
    workers = run.workers()
    if len(workers):
        flagged = workers[workers.status != "ok"]
        console.print(f"{len(workers)} workers seen, {len(flagged)} with a different environment")
        for row in flagged.itertuples():
            console.print(f"  [yellow]{row.name}[/yellow]: {row.reason}")
    return 0


def _print_status(status, console) -> None:
    from rich.table import Table

    table = Table(title=f"run {status.name}")
    for state in status.counts:
        table.add_column(state, justify="right")
    table.add_row(*(str(n) for n in status.counts.values()))
    console.print(table)
    eta = f", ETA {status.eta}" if status.eta and status.remaining else ""
    pace = (f"{status.rate * 60:.1f} files/min over the last 10 minutes" if not math.isnan(status.rate)
            else "pace not measured yet (no two batches finished in the last 10 minutes)")
    console.print(f"{status.total} files, {status.remaining} to go, {pace}{eta}")
    if status.top_errors:
        console.print("top errors: " + ", ".join(f"{kind} ({n})" for kind, n in status.top_errors))


def _export(args) -> int:
    from lid_dask.runs import Run, file_name

    target = args.output or f"{file_name(args.name)}.{args.format}"
    rows = Run(args.name, _db(args)).export(target, args.format)
    Console(stderr=True).print(f"wrote {rows} rows to {target}")
    return 0


def _evaluate(args) -> int:
    from lid_dask.evaluation import summary_table, top_confusions, write_report
    from lid_dask.evaluation.workflow import evaluate_run

    console = Console(stderr=True)
    run, labels = _labelled_run(args, console)
    dataset = args.dataset or args.labels
    evaluation = evaluate_run(run, labels, dataset, threshold=args.fail_on_regression or 0.02)
    out = Console()
    out.print(f"evaluation {evaluation.id} of run {run.name} on {dataset}")
    out.print(summary_table(evaluation.dataset).round(4).to_string())
    out.print("top confusions (consensus):")
    out.print(top_confusions(evaluation.dataset, "consensus", 5).to_string(index=False))
    if evaluation.comparison is not None:
        out.print(evaluation.comparison.summary())
    if args.report:
        write_report(evaluation.dataset, args.report, previous=evaluation.comparison)
        console.print(f"report written to {args.report}/report.html")
    if args.fail_on_regression is not None and evaluation.comparison is not None:
        return 3 if evaluation.comparison.exit_code() else 0
    return 0


def _labelled_run(args, console):
    """The run to evaluate: the named one, or a new run of the given models over the labelled files."""
    from lid_dask.cluster import connect
    from lid_dask.evaluation.workflow import load_ground_truth
    from lid_dask.ledger import Ledger
    from lid_dask.runs import Run

    ledger = Ledger.existing(_db(args)) if getattr(args, "run", None) else Ledger(_db(args))
    labels = load_ground_truth(args.labels, ledger, kind=args.label_format, split=args.split)
    if labels.unknown:
        console.print(f"[yellow]{sum(labels.unknown.values())} labels name no known language:[/yellow] "
                      + ", ".join(f"{k!r} ({n})" for k, n in list(labels.unknown.items())[:10]))
    if getattr(args, "run", None):
        return Run(args.run, ledger=ledger), labels
    import datetime as dt

    name = f"eval-{dt.datetime.now():%Y%m%d-%H%M%S}"
    run = Run.create(name, list(labels.frame["uri"]), _db(args), models=args.models)
    client = connect(args.scheduler, n_workers=args.workers)
    try:
        run.execute(client)
    finally:
        cluster = client.cluster
        client.close()
        if cluster is not None:
            cluster.close()
    return run, labels


def _calibrate(args) -> int:
    from lid_dask.evaluation.workflow import calibrate_run

    console = Console()
    run, labels = _labelled_run(args, Console(stderr=True))
    effect = calibrate_run(run, labels, args.dataset or args.labels)
    ece = effect["calibration_ece"].to_pandas()
    console.print("expected calibration error on held-out files (not used for the fit):")
    console.print(ece.round(4).to_string())
    console.print("stored; new runs of these models apply it (`lid-dask run`)")
    return 0


def _review(args) -> int:
    from lid_dask.evaluation.workflow import export_review, import_review
    from lid_dask.ledger import Ledger
    from lid_dask.runs import Run

    console = Console(stderr=True)
    if args.review_command == "export":
        n = export_review(Run(args.name, _db(args)), args.output)
        console.print(f"{n} files to review written to {args.output}; fill in reviewed_language")
    else:
        n = import_review(Ledger.existing(_db(args)), args.path, args.dataset)
        console.print(f"{n} reviewed labels stored as ground truth; use --labels db:{args.dataset}")
    return 0


def _database(args) -> int:
    from lid_dask.ledger import Ledger

    ledger = Ledger(_db(args))
    Console(stderr=True).print(f"the ledger at {ledger.url_for_display} has schema {ledger.schema_revision()}")
    return 0


def _retry(args) -> int:
    from lid_dask.runs import Run

    n = Run(args.name, _db(args)).retry(args.kinds)
    Console(stderr=True).print(f"{n} files back to pending; `lid-dask run --name {args.name}` processes them")
    return 0


def _identify(args) -> int:
    from lid_dask.engine import Identifier
    from lid_dask.progress import track
    from lid_dask.sources import expand_sources

    identifier = Identifier(models=args.models or [DEFAULT_MODEL], windows=args.windows, languages=args.languages,
                            vad=args.vad, device=args.device, storage_options=args.storage_options,
                            allow_private_network=_private_network(args))
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"identify": _identify, "run": _run, "status": _status, "export": _export, "retry": _retry,
                "evaluate": _evaluate, "calibrate": _calibrate, "review": _review, "db": _database}
    try:
        return commands[args.command](args)
    except (ValueError, RuntimeError, OSError, LookupError) as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {exc}")  # soft: paths stay whole
        return 2


if __name__ == "__main__":
    sys.exit(main())
