"""``lid-dask run | status | export | retry | db``: runs in the ledger."""

from __future__ import annotations

import math

from rich.console import Console

from lid_dask.cli import options


def add_commands(commands) -> None:
    run = commands.add_parser("run", help="run (or resume) a distributed, resumable job over many files",
                              description="Register SOURCES in a run and process it on a Dask cluster. "
                                          "Rerunning the same command resumes; new files join the run.")
    run.add_argument("sources", nargs="*", metavar="SOURCE",
                     help="files, folders, globs, fsspec URLs (s3://bucket/prefix), manifests (CSV/Parquet), "
                          "S3 Inventory manifest.json")
    run.add_argument("--name", help="run name (default: a new name from the time; give it to resume)")
    options.database(run)
    options.cluster(run)
    options.engine(run, defaults=False)
    run.add_argument("--batch-files", type=int, help="files per batch (default 32)")
    run.add_argument("--max-attempts", type=int, help="attempts before a transient failure is dead (default 3)")
    run.add_argument("--on-drift", choices=["flag", "refuse"], help="workers whose environment differs")
    run.add_argument("--no-progress", action="store_true")
    run.set_defaults(handler=run_command)

    status = commands.add_parser("status", help="counts by state, rate, ETA and top errors of a run")
    status.add_argument("name", nargs="?", help="run name (default: list the runs)")
    options.database(status)
    status.set_defaults(handler=status_command)

    export = commands.add_parser("export", help="write a run's results to Parquet or CSV")
    export.add_argument("name")
    export.add_argument("-o", "--output", help="file or fsspec URL (default RUN.parquet / RUN.csv)")
    export.add_argument("-f", "--format", default="parquet", choices=["parquet", "csv"])
    options.database(export)
    export.set_defaults(handler=export_command)

    retry = commands.add_parser("retry", help="send failed and dead files of a run back to pending")
    retry.add_argument("name")
    retry.add_argument("--kind", action="append", dest="kinds", metavar="ERROR_KIND",
                       help="only files that failed with this error kind (repeatable)")
    options.database(retry)
    retry.set_defaults(handler=retry_command)

    db = commands.add_parser("db", help="the ledger database itself")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="create the ledger's tables or upgrade its schema to this "
                                                     "lid-dask's (runs do it too; other commands never do)")
    options.database(upgrade)
    upgrade.set_defaults(handler=upgrade_command)


def run_command(args) -> int:
    from lid_dask.ledger import Ledger
    from lid_dask.runs import Run
    from lid_dask.storage import local_worker_environment, split_secrets

    settings = dict(batch_files=args.batch_files, max_attempts=args.max_attempts, on_drift=args.on_drift)
    settings = {k: v for k, v in settings.items() if v is not None}
    url = options.database_url(args)
    ledger = Ledger(url)
    if args.name and args.name in {r.name for r in ledger.list_runs()}:
        run = Run(args.name, ledger=ledger, storage_options=args.storage_options)
        added = run.add(args.sources, allowed_roots=args.allowed_roots) if args.sources else 0
    else:
        if not args.sources:
            raise ValueError("a new run needs at least one SOURCE")
        run = Run.create(args.name, [], url, **options.engine_settings(args), **settings)
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
    with options.cluster_client(args, env=local_worker_environment(secret)) as client:
        progress = run.execute(client, progress=not args.no_progress, **settings)
    print_status(run.status(), console)
    if progress.ignored:
        console.print(f"[yellow]{sum(progress.ignored.values())} answers were not recorded[/yellow] (not this "
                      "session's to record; see the log): " + ", ".join(f"{reason} ({n})"
                                                                     for reason, n in progress.ignored.items()))
    return 0


def status_command(args) -> int:
    from lid_dask.ledger import Ledger
    from lid_dask.runs import Run

    ledger = Ledger.existing(options.database_url(args))
    console = Console()
    if not args.name:
        for info in ledger.list_runs():
            console.print(info.name)
        return 0
    run = Run(args.name, ledger=ledger)
    print_status(run.status(), console)
    workers = run.workers()
    if len(workers):
        flagged = workers[workers.status != "ok"]
        console.print(f"{len(workers)} workers seen, {len(flagged)} with a different environment")
        for row in flagged.itertuples():
            console.print(f"  [yellow]{row.name}[/yellow]: {row.reason}")
    return 0


def print_status(status, console) -> None:
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


def export_command(args) -> int:
    from lid_dask.runs import Run, file_name

    target = args.output or f"{file_name(args.name)}.{args.format}"
    rows = Run(args.name, options.database_url(args)).export(target, args.format)
    Console(stderr=True).print(f"wrote {rows} rows to {target}")
    return 0


def retry_command(args) -> int:
    from lid_dask.runs import Run

    n = Run(args.name, options.database_url(args)).retry(args.kinds)
    Console(stderr=True).print(f"{n} files back to pending; `lid-dask run --name {args.name}` processes them")
    return 0


def upgrade_command(args) -> int:
    from lid_dask.ledger import Ledger

    ledger = Ledger(options.database_url(args))
    Console(stderr=True).print(f"the ledger at {ledger.url_for_display} has schema {ledger.schema_revision()}")
    return 0
