"""``lid-dask evaluate | calibrate | review``: predictions against ground truth."""

from __future__ import annotations

import datetime as dt

from rich.console import Console

from lid_dask.cli import options


def add_commands(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="evaluate a run, or models, against ground truth",
                                   description="Join predictions to labels; per-language metrics, calibration, "
                                               "consensus value; compare with the previous evaluation.")
    options.labels(evaluate)
    what = evaluate.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", help="evaluate this existing run")
    what.add_argument("-m", "--model", action="append", dest="models", metavar="SPEC",
                      help="run these models over the labelled files first (repeatable)")
    evaluate.add_argument("--dataset", help="name of the labelled set, for comparisons (default: the labels path)")
    evaluate.add_argument("--report", metavar="DIR", help="write report.md, report.html and plots here")
    evaluate.add_argument("--fail-on-regression", type=float, metavar="DROP",
                          help="exit 3 if any language drops by more than DROP (e.g. 0.02), significantly")
    options.cluster(evaluate)
    options.database(evaluate)
    evaluate.set_defaults(handler=evaluate_command)

    calibrate = commands.add_parser("calibrate", help="fit each model's confidence calibration on labelled data")
    options.labels(calibrate)
    calibrate.add_argument("--run", required=True, help="a run over labelled files")
    calibrate.add_argument("--dataset", help="name of the labelled set (default: the labels path)")
    options.database(calibrate)
    calibrate.set_defaults(handler=calibrate_command)

    review = commands.add_parser("review", help="export files that need a person; import their answers")
    review_commands = review.add_subparsers(dest="review_command", required=True)
    export_review = review_commands.add_parser("export", help="CSV of files to review, with links to listen")
    export_review.add_argument("name", help="run name")
    export_review.add_argument("-o", "--output", required=True)
    options.database(export_review)
    export_review.set_defaults(handler=review_export_command)
    import_review = review_commands.add_parser("import", help="store reviewed languages as ground truth")
    import_review.add_argument("path", help="the exported CSV with reviewed_language filled in")
    import_review.add_argument("--dataset", default="reviewed",
                               help="ground-truth name; evaluate with --labels db:NAME (default reviewed)")
    options.database(import_review)
    import_review.set_defaults(handler=review_import_command)


def evaluate_command(args) -> int:
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
    from lid_dask.evaluation.workflow import load_ground_truth
    from lid_dask.ledger import Ledger
    from lid_dask.runs import Run

    url = options.database_url(args)
    ledger = Ledger.existing(url) if args.run else Ledger(url)
    labels = load_ground_truth(args.labels, ledger, kind=args.label_format, split=args.split)
    if labels.unknown:
        console.print(f"[yellow]{sum(labels.unknown.values())} labels name no known language:[/yellow] "
                      + ", ".join(f"{k!r} ({n})" for k, n in list(labels.unknown.items())[:10]))
    if args.run:
        return Run(args.run, ledger=ledger), labels
    run = Run.create(f"eval-{dt.datetime.now():%Y%m%d-%H%M%S}", list(labels.frame["uri"]), url, models=args.models)
    with options.cluster_client(args) as client:
        run.execute(client)
    return run, labels


def calibrate_command(args) -> int:
    from lid_dask.evaluation.workflow import calibrate_run

    console = Console()
    run, labels = _labelled_run(args, Console(stderr=True))
    effect = calibrate_run(run, labels, args.dataset or args.labels)
    ece = effect["calibration_ece"].to_pandas()
    console.print("expected calibration error on held-out files (not used for the fit):")
    console.print(ece.round(4).to_string())
    console.print("stored; new runs of these models apply it (`lid-dask run`)")
    return 0


def review_export_command(args) -> int:
    from lid_dask.evaluation.workflow import export_review
    from lid_dask.runs import Run

    n = export_review(Run(args.name, options.database_url(args)), args.output)
    Console(stderr=True).print(f"{n} files to review written to {args.output}; fill in reviewed_language")
    return 0


def review_import_command(args) -> int:
    from lid_dask.evaluation.workflow import import_review
    from lid_dask.ledger import Ledger

    n = import_review(Ledger.existing(options.database_url(args)), args.path, args.dataset)
    Console(stderr=True).print(f"{n} reviewed labels stored as ground truth; use --labels db:{args.dataset}")
    return 0
