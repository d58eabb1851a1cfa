"""``lid-dask run | status | export | retry | config | delete | db``: runs in the ledger."""

from __future__ import annotations

import json
import math

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lid_dask.cli import options
from lid_dask.vocabulary import ErrorKind

TOP_LANGUAGES = 10  # rows of the end-of-run table; the rest are summed as "other"


def add_commands(commands) -> None:
    run = commands.add_parser("run", help="run (or resume) a distributed, resumable job over many files",
                              description="Register SOURCES in a run and process it on a Dask cluster. "
                                          "Rerunning the same command resumes; new files join the run.")
    run.add_argument("sources", nargs="*", metavar="SOURCE",
                     help="files, folders, globs, fsspec URLs (s3://bucket/prefix), manifests (CSV/Parquet), "
                          "S3 Inventory manifest.json")
    run.add_argument("--name", help="run name (default: made from the SOURCES, so the same command resumes; "
                                    "give it to resume without them)")
    options.database(run)
    options.cluster(run)
    options.engine(run, defaults=False)
    run.add_argument("--batch-files", type=int, help="files per batch at most (default 32)")
    run.add_argument("--max-attempts", type=int, help="attempts before a transient failure is dead (default 3)")
    run.add_argument("--on-drift", choices=["flag", "refuse"], help="workers whose environment differs")
    run.add_argument("--drift-baseline", metavar="RUN", help="compare the answers' language mix and confidence with "
                                                            "this earlier run's (default: this run's first files)")
    run.add_argument("--no-progress", action="store_true")
    run.set_defaults(handler=run_command)

    status = commands.add_parser("status", help="a run's counts, pace, ETA, answers and errors; or the runs")
    status.add_argument("name", nargs="?", help="run name (default: list the runs)")
    status.add_argument("--watch", nargs="?", type=float, const=5.0, metavar="SECONDS",
                        help="redraw every SECONDS (default 5) until Ctrl-C, with the language mix and drift")
    status.add_argument("--drift-baseline", metavar="RUN", help="an earlier run to compare with (default: the run's "
                                                                "first files)")
    options.database(status)
    status.set_defaults(handler=status_command)

    export = commands.add_parser("export", help="write a run's results to Parquet or CSV")
    export.add_argument("name")
    export.add_argument("-o", "--output", help="file or fsspec URL (default RUN.parquet / RUN.csv)")
    export.add_argument("-f", "--format", choices=["parquet", "csv"],
                        help="default: from the output's extension, else parquet")
    options.storage(export)
    options.database(export)
    export.set_defaults(handler=export_command)

    retry = commands.add_parser("retry", help="send failed and dead files of a run back to pending")
    retry.add_argument("name")
    retry.add_argument("--kind", action="append", dest="kinds", metavar="ERROR_KIND", choices=[k.value for k in ErrorKind],
                       help="only files that failed with this error kind (repeatable): "
                            + ", ".join(k.value for k in ErrorKind if not k.is_answer))
    options.database(retry)
    retry.set_defaults(handler=retry_command)

    config = commands.add_parser("config", help="show a run's settings, or change those that are safe to change")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    show = config_commands.add_parser("show", help="the run's stored settings (JSON)")
    show.add_argument("name")
    options.database(show)
    show.set_defaults(handler=config_show_command)
    change = config_commands.add_parser("set", help="change settings that do not decide the answers",
                                        description="Run settings (batch_files, max_attempts, on_drift, ...) and "
                                                    "the engine's device, storage_options, allow_private_network, "
                                                    "chunk_files and decode_threads. VALUE is JSON or text.")
    change.add_argument("name")
    change.add_argument("changes", nargs="+", metavar="KEY=VALUE")
    options.database(change)
    change.set_defaults(handler=config_set_command)

    delete = commands.add_parser("delete", help="delete a run with its files and results from the ledger")
    delete.add_argument("name")
    delete.add_argument("--yes", action="store_true", help="really delete it")
    options.database(delete)
    delete.set_defaults(handler=delete_command)

    db = commands.add_parser("db", help="the ledger database itself")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="create the ledger's tables or upgrade its schema to this "
                                                     "lid-dask's (runs do it too; other commands never do)")
    options.database(upgrade)
    upgrade.set_defaults(handler=upgrade_command)


def run_command(args) -> int:
    from lid_dask.runs import Run, file_name
    from lid_dask.storage import local_worker_environment, split_secrets

    settings = dict(batch_files=args.batch_files, max_attempts=args.max_attempts, on_drift=args.on_drift,
                    drift_baseline=args.drift_baseline)
    settings = {k: v for k, v in settings.items() if v is not None}
    url = options.database_url(args)
    if args.name and not args.sources:  # resuming by name: a run that is not there would be made empty
        from lid_dask.ledger.database import LedgerError

        try:
            Run(args.name, url)
        except (LookupError, LedgerError) as exc:  # no such run, or no ledger there
            raise LookupError(f"{exc}; to start run {args.name!r}, give its SOURCES: "
                              f"lid-dask run SOURCES --name {args.name}") from None
    # Everything is checked, and the sources listed, before a cluster starts.
    run = Run.create(args.name, args.sources, url, allowed_roots=args.allowed_roots,
                     **options.engine_settings(args), **settings)
    console = Console(stderr=True)
    console.print(f"run [bold]{escape(run.name)}[/bold] in {escape(run.ledger.url_for_display)}: "
                  f"{run.added} new files, {run.status().total} in all")
    _, secret = split_secrets(args.storage_options)
    if secret:
        reach = ("the local workers get them through their environment" if not args.scheduler else
                 "remote workers read the audio with credentials from their own environment "
                 "(LID_DASK_STORAGE_OPTIONS, FSSPEC_*, AWS_*: see cluster/README.md)")
        console.print(f"storage credentials ({', '.join(sorted(secret))}) were used here for listing only and "
                      f"are not stored in the ledger; {reach}")
    with options.cluster_client(args, env=local_worker_environment(secret)) as client:
        options.print_dashboard(client, args, console)
        progress = run.execute(client, progress=not args.no_progress, on_stop=_acknowledge(console),
                               console=console)
    out = Console()
    db = "" if args.db is None else f" --db {args.db}"
    print_status(run.status(), out)
    print_summary(run.summary(), out, db)
    if progress.ignored:
        console.print(f"[yellow]{sum(progress.ignored.values())} answers were not recorded[/yellow] (not this "
                      "session's to record; see the log): " + ", ".join(f"{reason} ({n})"
                                                                     for reason, n in progress.ignored.items()))
    if progress.stopped:
        console.print(f"[yellow]stopped[/yellow]: {progress.done_this_session} files finished this session and "
                      f"are kept; {progress.released} in flight went back to pending. Resume with the same command, "
                      f"or: lid-dask run --name {run.name}{db}", soft_wrap=True)
        return 130  # the shell's code for a run ended by Ctrl-C
    out.print(f"results: lid-dask export {run.name}{db} -o {file_name(run.name)}.parquet", soft_wrap=True)
    return 0


def _acknowledge(console):
    """What the orchestrator calls at once on Ctrl-C / SIGTERM (and again on a second one)."""
    def acknowledge(in_flight: int, drain_seconds: float, now: bool) -> None:
        if now:
            console.print(f"[yellow]stopping now[/yellow]: releasing the {in_flight} files in flight")
        else:
            console.print(f"[yellow]stopping[/yellow]: no new batches; waiting up to {drain_seconds:.0f} s for the "
                          f"{in_flight} files in flight (Ctrl-C again to release them now)")
    return acknowledge


def status_command(args) -> int:
    import time

    from lid_dask.ledger import Ledger
    from lid_dask.runs import Run

    ledger = Ledger.existing(options.database_url(args))
    console = Console()
    if not args.name:
        print_runs(ledger, console)
        return 0
    run = Run(args.name, ledger=ledger)
    if args.drift_baseline:
        ledger.get_run(args.drift_baseline)  # a clear error now, not at the first redraw
    if args.watch is None:
        _print_run(run, args, console)
        return 0
    try:
        while True:  # from the ledger: the view survives a scheduler restart
            console.clear()
            _print_run(run, args, console)
            console.print(f"[dim]{time.strftime('%H:%M:%S')}: redrawn every {args.watch:g} s; Ctrl-C to stop[/dim]")
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def _print_run(run, args, console) -> None:
    print_status(run.status(), console)
    print_summary(run.summary(), console, "" if args.db is None else f" --db {args.db}")
    if args.watch is not None or args.drift_baseline:
        print_drift(run.monitor(baseline=args.drift_baseline), console)
    workers = run.workers()
    if len(workers):
        flagged = workers[workers.status != "ok"]
        console.print(f"{len(workers)} workers seen, {len(flagged)} with a different environment")
        for row in flagged.itertuples():
            console.print(f"  [yellow]{escape(row.name)}[/yellow]: {escape(str(row.reason))}")


def print_drift(monitor, console) -> None:
    """The language mix now against the baseline, and each drift measure's PSI and state."""
    from lid_dask.figures import BASELINE_FILES, OTHER, WINDOW_FILES
    from lid_dask.languages import display_name

    table = Table(title=f"language mix: latest {WINDOW_FILES} files against the {escape(monitor.baseline_source)}"
                        + (f" (first {BASELINE_FILES})" if monitor.baseline_source == "first files" else ""))
    for column in ("language", "baseline", "latest"):
        table.add_column(column, justify="left" if column == "language" else "right")
    for row in monitor.languages.head(8).itertuples():
        name = row.language if row.language == OTHER else f"{display_name(row.language)} [{row.language}]"
        table.add_row(escape(name), f"{row.baseline:.1%}", f"{row.recent:.1%}")
    console.print(table)
    colours = {"stable": "green", "watch": "yellow", "drift": "red", "warming up": "dim"}
    parts = [f"{row.measure.replace('_', ' ')} [{colours[row.state]}]{row.state}[/]"
             + ("" if row.psi is None or row.psi != row.psi else f" ({row.psi:.2f})")
             for row in monitor.drift.itertuples()]
    console.print("drift (PSI; 0.1 watch, 0.25 drift): " + ", ".join(parts)
                  + ("; warming up: too few files yet to tell a change from a sample's noise"
                     if "warming up" in monitor.drift.state.values else ""))


def print_runs(ledger, console) -> None:
    runs = ledger.list_runs()
    if not runs:
        console.print(f"no runs in {ledger.url_for_display} yet; start one with: lid-dask run SOURCES")
        return
    table = Table(title=f"runs in {ledger.url_for_display}")
    for column in ("run", "created", "files", "done", "failed", "to go", "last finished"):
        table.add_column(column, justify="left" if column in ("run", "created", "last finished") else "right")
    for info in runs:
        counts = ledger.counts(info.id)
        last = ledger.last_finished(info.id)
        table.add_row(escape(info.name), _when(info.created_at), str(sum(counts.values())), str(counts["done"]),
                      str(counts["dead"] + counts["failed"]), str(counts["pending"] + counts["leased"]),
                      _when(last) if last else "-")
    console.print(table)


def _when(moment) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M %Z") if moment else "-"


def print_status(status, console) -> None:
    table = Table(title=f"run {escape(status.name)}")
    for state in status.counts:
        table.add_column(str(state), justify="right")
    table.add_row(*(str(n) for n in status.counts.values()))
    console.print(table)
    eta = f", ETA {status.eta}" if status.eta and status.remaining else ""
    pace = (f"{status.rate * 60:.1f} files/min over the last 10 minutes" if not math.isnan(status.rate)
            else "pace not measured yet (no two batches finished in the last 10 minutes)")
    console.print(f"{status.total} files, {status.remaining} to go, {pace}{eta}")


def print_summary(summary, console, db: str = "") -> None:
    """What the user came for: answers by language, what needs a person and why, what failed.
    `db` (`` --db URL`` or empty) goes into the commands it prints, so that they run as shown."""
    from lid_dask.languages import display_name

    if summary.answered:
        table = Table(title=f"{summary.answered} files answered, {_duration(summary.audio_hours * 3600)} of audio")
        for column, justify in (("language", "left"), ("files", "right"), ("audio", "right")):
            table.add_column(column, justify=justify)
        for language, files, seconds in summary.languages[:TOP_LANGUAGES]:
            name = escape(f"{display_name(language)} [{language}]") if language else "no speech / too short"
            table.add_row(name, str(files), _duration(seconds))
        rest = summary.languages[TOP_LANGUAGES:]
        if rest:
            table.add_row(f"{len(rest)} other languages", str(sum(n for _, n, _ in rest)),
                          _duration(sum(s for _, _, s in rest)))
        console.print(table)
    if summary.needs_review:
        console.print(f"needs review: {summary.needs_review} files ("
                      + ", ".join(f"{reason} {n}" for reason, n in summary.review_reasons.items()) + ")")
        console.print(f"  list them: lid-dask review export {summary.name}{db} -o review.csv", soft_wrap=True)
    print_accept_rule(summary, console)
    if summary.failures:
        console.print("failed: " + ", ".join(f"{kind} {n}" for kind, n in summary.failures))


def print_accept_rule(summary, console) -> None:
    """The share accepted without review and what the accept rule in force promises of it, or why
    the rule in the run's settings was refused (nothing without one: the default rule)."""
    rule = summary.accept_rule
    if rule is None:
        if summary.rule_refused:
            console.print(f"[yellow]{escape(summary.rule_refused)}[/yellow]: refused, the default review rule applies")
        return
    share = f"{summary.accepted / summary.finished:.1%}" if summary.finished else "n/a"
    promise = (f"accept rule {rule['id']} promises at least {100 * rule['target']:.4g}% of them right, with "
               f"{100 * rule['confidence_level']:.4g}% confidence" if rule["threshold"] is not None else
               f"accept rule {rule['id']} accepts nothing: it could promise nothing at {100 * rule['target']:.4g}%")
    console.print(f"accepted without review: {summary.accepted} of {summary.finished} finished files ({share}); "
                  f"{promise}")


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def export_command(args) -> int:
    from lid_dask.runs import Run, file_name

    fmt = args.format or ("csv" if (args.output or "").lower().endswith((".csv", ".csv.gz")) else "parquet")
    target = args.output or f"{file_name(args.name)}.{fmt}"
    rows = Run(args.name, options.database_url(args)).export(target, fmt, storage_options=args.storage_options)
    Console(stderr=True).print(f"wrote {rows} rows to {escape(target)}")
    return 0


def retry_command(args) -> int:
    from lid_dask.runs import Run

    n = Run(args.name, options.database_url(args)).retry(args.kinds)
    Console(stderr=True).print(f"{n} files back to pending; `lid-dask run --name {args.name}` processes them")
    return 0


def config_show_command(args) -> int:
    from lid_dask.runs import Run

    run = Run(args.name, options.database_url(args))
    Console().print_json(json.dumps({"name": run.name, "created": _when(run.info.created_at), **run.config}))
    return 0


def config_set_command(args) -> int:
    from lid_dask.runs import Run

    changes = {}
    for change in args.changes:
        key, sep, value = change.partition("=")
        if not sep:
            raise ValueError(f"{change!r} is not KEY=VALUE")
        try:
            changes[key] = json.loads(value)
        except json.JSONDecodeError:
            changes[key] = value
    run = Run(args.name, options.database_url(args))
    run.configure(**changes)
    Console(stderr=True).print(f"run {escape(run.name)}: " + ", ".join(f"{k} = {v!r}" for k, v in changes.items()))
    return 0


def delete_command(args) -> int:
    from lid_dask.runs import Run

    run = Run(args.name, options.database_url(args))
    total = run.status().total
    if not args.yes:
        raise ValueError(f"this deletes run {run.name!r} and the results of its {total} files; "
                         f"add --yes to do it")
    run.delete()
    Console(stderr=True).print(f"deleted run {escape(run.name)} ({total} files)")
    return 0


def upgrade_command(args) -> int:
    from lid_dask.ledger import Ledger

    ledger = Ledger(options.database_url(args))
    Console(stderr=True).print(f"the ledger at {ledger.url_for_display} has schema {ledger.schema_revision()}")
    return 0
