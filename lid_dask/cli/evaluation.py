"""``lid-dask evaluate | calibrate | calibration | review``: predictions against ground truth."""

from __future__ import annotations

import argparse
import datetime as dt

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

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

    calibrate = commands.add_parser("calibrate", help="fit each model's confidence calibration on labelled data",
                                    description="Fit on part of the labelled files, check on the rest; a "
                                                "calibration is stored (and new runs apply it) only if it lowers "
                                                "the expected calibration error on those held-out files.")
    options.labels(calibrate)
    calibrate.add_argument("--run", required=True, help="a run over labelled files")
    calibrate.add_argument("--dataset", help="name of the labelled set (default: the labels path)")
    calibrate.add_argument("--force", action="store_true",
                           help="store each calibration even where it does not lower the held-out error")
    calibrate.add_argument("--target-precision", type=_fraction, metavar="P",
                           help="also fit and store the accept rule: the answers new runs accept without review "
                                "are at least P right (e.g. 0.97), with probability --confidence-level; the others "
                                "go to review")
    calibrate.add_argument("--confidence-level", type=_fraction, default=0.95, metavar="L",
                           help="the probability that the accept rule's promise holds (default 0.95)")
    options.database(calibrate)
    calibrate.set_defaults(handler=calibrate_command)

    calibration = commands.add_parser("calibration", help="list or remove stored calibrations and accept rules")
    calibration_commands = calibration.add_subparsers(dest="calibration_command", required=True)
    listing = calibration_commands.add_parser("list", help="stored calibrations and accept rules, and which ones "
                                                           "new runs apply")
    listing.add_argument("--model", help="only this model's (its name, e.g. whisper-ct2)")
    options.database(listing)
    listing.set_defaults(handler=calibration_list_command)
    remove = calibration_commands.add_parser("remove", help="remove a stored calibration; new runs stop applying it")
    remove.add_argument("id", type=int, help="its id, from `lid-dask calibration list`")
    options.database(remove)
    remove.set_defaults(handler=calibration_remove_command)
    remove_rule = calibration_commands.add_parser("remove-rule", help="remove a stored accept rule; new runs stop "
                                                                      "applying it")
    remove_rule.add_argument("id", type=int, help="its id, from `lid-dask calibration list`")
    options.database(remove_rule)
    remove_rule.set_defaults(handler=accept_rule_remove_command)

    review = commands.add_parser("review", help="export files that need a person; import their answers")
    review_commands = review.add_subparsers(dest="review_command", required=True)
    export_review = review_commands.add_parser("export", help="CSV of files to review, with links to listen")
    export_review.add_argument("name", help="run name")
    export_review.add_argument("-o", "--output", required=True)
    options.storage(export_review)
    options.database(export_review)
    export_review.set_defaults(handler=review_export_command)
    import_review = review_commands.add_parser("import", help="store reviewed languages as ground truth")
    import_review.add_argument("path", help="the exported CSV with reviewed_language filled in")
    import_review.add_argument("--dataset", default="reviewed",
                               help="ground-truth name; evaluate with --labels db:NAME (default reviewed)")
    options.storage(import_review)
    options.database(import_review)
    import_review.set_defaults(handler=review_import_command)


def evaluate_command(args) -> int:
    from lid_dask.evaluation import summary_table, top_confusions, write_report
    from lid_dask.evaluation.report import distinct_models, primary_model
    from lid_dask.evaluation.workflow import evaluate_run

    console = Console(stderr=True)
    run, labels = _labelled_run(args, console)
    dataset = args.dataset or args.labels
    evaluation = evaluate_run(run, labels, dataset, threshold=args.fail_on_regression or 0.02)
    shown = distinct_models(evaluation.dataset)
    model = primary_model(shown)
    out = Console()
    out.print(escape(f"evaluation {evaluation.id} of run {run.name} on {dataset}"))
    out.print(escape(summary_table(shown).round(4).to_string()))
    out.print(escape(f"top confusions ({model}):"))
    out.print(escape(top_confusions(shown, model, 5).to_string(index=False)))
    out.print(escape(accepted_summary(evaluation.dataset)))
    if evaluation.comparison is not None:
        out.print(escape(evaluation.comparison.summary()))
    if args.report:
        write_report(evaluation.dataset, args.report, previous=evaluation.comparison, frame=evaluation.frame)
        console.print(f"report written to {escape(args.report)}/report.html")
    if args.fail_on_regression is not None and evaluation.comparison is not None:
        return 3 if evaluation.comparison.exit_code() else 0
    return 0


def accepted_summary(ds) -> str:
    """What the review rule in force did on the labelled files (`acceptance_effect`)."""
    value = {key: float(ds[f"accept_{key}"]) for key in ("files", "accepted", "coverage", "precision", "precision_low",
                                                           "precision_high", "review_queue", "errors_caught")}
    interval = (f" (95% interval {_percent(value['precision_low'])} - {_percent(value['precision_high'])})"
                if value["accepted"] else "")
    return (f"review rule: {ds.attrs.get('accept_rule')}\n"
            f"accepted without review: {value['accepted']:.0f} of {value['files']:.0f} files "
            f"({_percent(value['coverage'])}), precision {_percent(value['precision'])}{interval}; review queue "
            f"{value['review_queue']:.0f} files, holding {_percent(value['errors_caught'])} of the wrong answers")


def _labelled_run(args, console):
    """The run to evaluate: the named one, or a new run of the given models over the labelled files."""
    from lid_dask.evaluation.workflow import load_ground_truth
    from lid_dask.ledger import Ledger
    from lid_dask.runs import Run

    url = options.database_url(args)
    ledger = Ledger.existing(url) if args.run else Ledger(url)
    labels = load_ground_truth(args.labels, ledger, kind=args.label_format, split=args.split)
    if labels.frame.empty:
        raise ValueError(f"no labelled files in {args.labels} (split {args.split!r}): check the path and --label-format")
    if labels.unknown:
        console.print(f"[yellow]{sum(labels.unknown.values())} labels name no known language:[/yellow] "
                      + escape(", ".join(f"{k!r} ({n})" for k, n in list(labels.unknown.items())[:10])))
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
    calibrated = calibrate_run(run, labels, args.dataset or args.labels, force=args.force)
    in_use = run.ledger.evaluations.latest_calibrations(sorted(calibrated.kept_out))
    console.print("expected calibration error (ECE) on held-out files, which the fit never saw:")
    for model in map(str, calibrated.effect["model"].values):
        ece = calibrated.effect["calibration_ece"].sel(model=model)
        before, after = (_percent(ece.sel(stage=stage)) for stage in ("raw", "calibrated"))
        name, why = escape(model), calibrated.kept_out.get(model)
        if model in calibrated.stored:
            forced = f" (forced: it does not help, {escape(why)})" if why else ""
            console.print(f"  {name}: [green]stored[/green] as calibration {calibrated.stored[model]}, held-out ECE "
                          f"{before} -> {after}{forced}; new runs of {name} apply it")
            continue
        current = in_use.get(model)
        then = (f"new runs of {name} still apply calibration {current['id']} (`lid-dask calibration remove "
                f"{current['id']}` drops it)" if current else f"new runs of {name} apply none")
        console.print(f"  {name}: [yellow]kept out[/yellow], {escape(why)}; {then}; --force stores it anyway")
    if args.target_precision is not None:
        _fit_accept_rule(run, labels, args.dataset or args.labels, args.target_precision, args.confidence_level,
                         console)
    return 0


def _fit_accept_rule(run, labels, dataset: str, target: float, level: float, console) -> None:
    """Fit the accept rule on the confidence new runs give (the calibrations just stored included),
    store it, and say what it promises, or why it can promise nothing."""
    from lid_dask.evaluation.acceptance import fit_accept_run, store_accept_rule
    from lid_dask.evaluation.selective import minimum_files

    fitted = fit_accept_run(run, labels, target, level)
    rule, stats = fitted.rule, fitted.performance
    models = escape(", ".join(fitted.calibrations))
    under = ", ".join(f"{m}: calibration {i}" if i else f"{m}: its own" for m, i in fitted.calibrations.items())
    console.print(f"accept rule for {100 * target:.4g}% precision at {100 * level:.4g}% confidence, on "
                  f"{stats['files']} labelled files ({rule.n} that no other reason sends to review), with the "
                  f"confidence new runs give ({escape(under)}):")
    if rule.threshold is not None:
        console.print(f"  accept answers of confidence at least {rule.threshold:g}: {stats['accepted']} of "
                      f"{stats['files']} labelled files ({_percent(stats['coverage'])}) accepted, {rule.errors} of "
                      f"them wrong; with {100 * level:.4g}% confidence, at least {_percent(rule.precision_lower)} "
                      f"of what new runs accept is right (promised: {100 * target:.4g}%)")
        then = f"new runs of {models} accept those answers and send the rest to review"
    else:
        needed = minimum_files(target, level)
        curve = fitted.curve[fitted.curve["accepted"] >= needed]
        if curve.empty:
            why = (f"too few labelled files: {rule.n} could be accepted, and promising {100 * target:.4g}% at "
                   f"{100 * level:.4g}% confidence takes at least {needed} accepted files without a single error "
                   "(more with errors)")
        else:
            top = curve.iloc[0]
            accepted = int(top["accepted"])
            why = (f"the most confident answers hold too many errors: {round(accepted * (1 - top['precision']))} of "
                   f"the {accepted} at confidence at least {top['threshold']:g}")
        console.print(f"  [yellow]nothing can be promised[/yellow]: {why}")
        then = f"new runs of {models} send every answer to review"
    rule_id = store_accept_rule(run, fitted, dataset)
    console.print(f"  stored as accept rule {rule_id}; {then} (`lid-dask calibration remove-rule {rule_id}` drops it)")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not strictly between 0 and 1")
    return value


def calibration_list_command(args) -> int:
    from lid_dask.ledger import Ledger

    ledger = Ledger.existing(options.database_url(args))
    frame = ledger.evaluations.calibrations_frame(args.model)
    rules = ledger.evaluations.accept_rules_frame(args.model)
    console = Console()
    if frame.empty and rules.empty:
        which = f"of {args.model} " if args.model else ""
        console.print(escape(f"no calibration {which}stored in {ledger.url_for_display}; `lid-dask calibrate` fits "
                             "one (and an accept rule with --target-precision)"))
        return 0
    if not frame.empty:
        _calibrations_table(frame, console)
    if not rules.empty:
        _accept_rules_table(rules, console)
    return 0


def _calibrations_table(frame, console) -> None:
    table = Table(title="calibrations: new runs of a model apply the one in use", box=box.SIMPLE_HEAD,
                  collapse_padding=True, pad_edge=False)
    for column in ("id", "model", "method", "dataset", "held-out ECE", "date", "in use"):
        table.add_column(column, justify="right" if column == "id" else "left",
                         **({"overflow": "fold"} if column == "dataset" else {"no_wrap": True}))
    for row in frame.itertuples():
        table.add_row(str(row.id), escape(row.model), row.method, escape(row.dataset),
                      f"{_percent(row.ece_before)} -> {_percent(row.ece_after)}",
                      f"{row.created_at.to_pydatetime().astimezone():%Y-%m-%d}", "yes" if row.in_use else "")
    console.print(table)


def _accept_rules_table(frame, console) -> None:
    table = Table(title="accept rules: new runs of the same models, calibrations and settings apply the one in use",
                  box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for column in ("id", "models", "promise", "accepts", "accepted", "calibration", "dataset", "in use"):
        table.add_column(column, justify="right" if column == "id" else "left",
                         **({"overflow": "fold"} if column == "dataset" else {"no_wrap": True}))
    for row in frame.itertuples():
        rule = row.params
        calibrations = ", ".join(f"{i}" for i in row.calibrations.values() if i) or "none"
        table.add_row(str(row.id), escape(row.models_key.replace(",", ", ")),
                      f"{100 * rule['target']:.4g}% at {100 * rule['confidence_level']:.4g}%",
                      "nothing" if rule["threshold"] is None else f"≥ {rule['threshold']:g}",
                      f"{rule['accepted']}/{rule['n']}", calibrations, escape(row.dataset),
                      "yes" if row.in_use else "")
    console.print(table)


def calibration_remove_command(args) -> int:
    from lid_dask.ledger import Ledger

    ledger = Ledger.existing(options.database_url(args))
    removed = ledger.evaluations.remove_calibration(args.id)
    model = removed["model"]
    now = ledger.evaluations.latest_calibrations([model]).get(model)
    then = f"calibration {now['id']}" if now else "no calibration"
    Console(stderr=True).print(escape(f"removed calibration {args.id} of {model} (fitted on {removed['dataset']}); "
                                      f"new runs of {model} apply {then}, runs already made keep theirs"))
    return 0


def accept_rule_remove_command(args) -> int:
    from lid_dask.ledger import Ledger

    ledger = Ledger.existing(options.database_url(args))
    removed = ledger.evaluations.remove_accept_rule(args.id)
    rules = ledger.evaluations.accept_rules_frame()
    same = rules[(rules["models_key"] == removed["models_key"]) & rules["in_use"]
                 & rules["settings"].map(lambda settings: settings == removed["settings"])]
    now = f"accept rule {same.iloc[-1]['id']}" if len(same) else "the default review rule"
    models = removed["models_key"].replace(",", ", ")
    Console(stderr=True).print(escape(f"removed accept rule {args.id} of {models} (fitted on {removed['dataset']}); "
                                      f"new runs of {models} apply {now}, runs already made keep theirs"))
    return 0


def _percent(value) -> str:
    value = float(value) if value is not None else float("nan")
    return "n/a" if value != value else f"{value:.1%}"


def review_export_command(args) -> int:
    from lid_dask.evaluation.workflow import export_review
    from lid_dask.runs import Run

    n = export_review(Run(args.name, options.database_url(args)), args.output, storage_options=args.storage_options)
    Console(stderr=True).print(f"{n} files to review written to {escape(args.output)}; fill in reviewed_language")
    return 0


def review_import_command(args) -> int:
    from lid_dask.evaluation.workflow import import_review
    from lid_dask.ledger import Ledger

    n = import_review(Ledger.existing(options.database_url(args)), args.path, args.dataset,
                      storage_options=args.storage_options)
    Console(stderr=True).print(f"{n} reviewed labels stored as ground truth; use --labels "
                               f"db:{escape(args.dataset)}")
    return 0
