"""An evaluation as a report people look at: Markdown and HTML with PNG plots.

    write_report(ds, "report/")                      # ds from evaluate (merged with calibration_effect)
    write_report(ds, "report/", previous=old_ds)     # adds the regression table
    write_report(ds, "report/", frame=frame)         # adds the misidentified files (frame: evaluation_frame)

Tables and plots are about the primary model: ``consensus`` when present (the answer users
get), else the first model; the summary, long-tail and coverage views show every model. With
one model the consensus is that model's answer, so only the model is shown (`distinct_models`).

Figures are drawn with matplotlib's object API (`Figure`, rendered by Agg when saved), not pyplot:
no global backend is switched, so importing this in a notebook or a worker changes nothing.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from lid_dask.evaluation.metrics import (CONSENSUS, NONE, misidentified_files, per_language_table, summary_table,
                                         top_confusions)
from lid_dask.evaluation.regression import Comparison, compare

GROUP_COLOURS = ["#2b6cb0", "#68a0d8", "#b5d0ee"]  # long-tail groups, most files first; then grey
OTHER_COLOUR = "#cccccc"
MARKER_COLOURS = ["#e8590c", "#212529", "#c2255c", "#2f9e44"]  # stand out on the blue bars
CONFUSION_LANGUAGES = 12  # rows (true languages) of the confusion plot
CONFUSION_OTHERS = 6  # columns for wrong answers outside those rows
MISIDENTIFIED = 50  # rows of the misidentified files' table
ABOUT = {"run": "run", "models": "models", "dataset": "labels", "calibrations": "calibrations applied",
         "accept_rule": "review rule", "run_created": "run created",
         "evaluated": "evaluated"}  # Dataset attrs (evaluate_run) -> heading
DPI = 110


def write_report(dataset: xr.Dataset, out_dir, previous: xr.Dataset | Comparison | None = None,
                 title: str = "Language identification: evaluation", frame=None) -> Path:
    """Write report.md, report.html and the PNGs into `out_dir`; returns the Markdown path.

    `previous` is the previous evaluation's Dataset (compared by bootstrap), or a `Comparison`
    already made with per-file pairs (McNemar). `frame`, the evaluation frame the Dataset came
    from, adds the list of misidentified files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    evaluated, dataset = dataset, distinct_models(dataset)
    model = primary_model(dataset)
    blocks: list[tuple] = [("h1", title), ("list", _about(dataset, folded=len(dataset.model) < len(evaluated.model)))]
    blocks += [("h2", "Summary"), ("table", _summary(dataset))]

    blocks += [("h2", f"Per language ({model})"),
               ("p", "Accuracy on each language's files (recall), languages sorted by number of files; "
                     "colour: long-tail group." + (" Markers: the other models." if dataset.sizes["model"] > 1
                                                   else "")),
               ("img", _plot_languages(dataset, model, out / "accuracy_by_language.png"))]
    blocks += [("h3", f"Long tail: accuracy by {dataset.attrs.get('long_tail', 'group')}"),
               ("table", _long_tail(dataset))]
    table = per_language_table(dataset, model)
    worst = table[table["support"] > 0].sort_values(["recall", "support"], ascending=[True, False]).head(10)
    blocks += [("h3", "Worst languages"), ("table", _percent(worst.reset_index(), ["precision", "recall", "f1"]))]
    blocks += [("h3", "Top confusions"),
               ("table", _percent(top_confusions(dataset, model), ["share"])),
               ("p", "Rows: true languages with the most files; columns: the answers given to them, wrong ones "
                     "included whatever they are."),
               ("img", _plot_confusion(dataset, model, out / "confusion.png"))]
    if frame is not None:
        blocks += _misidentified(frame, model)

    blocks += [("h2", "Confidence"),
               ("p", "Reliability: for files answered with a given confidence, how often the answer was right "
                     f"(on the diagonal = calibrated), in {dataset.sizes['bin']} bins for these "
                     f"{int(dataset['n'].max())} files (about 30 files a bin, 5 to 15; ECE always has 15). With a "
                     "calibration, both curves are on held-out files, in bins of their own."),
               ("img", _plot_reliability(dataset, out / "reliability.png"))]
    if "calibration_ece" in dataset:
        ece = dataset["calibration_ece"].to_pandas().dropna(how="all")
        blocks += [("h3", "Expected calibration error on held-out files"),
                   ("table", _percent(ece.reset_index(), list(ece.columns)))]
    blocks += [("p", "Rejecting answers below a confidence threshold: accuracy of what is kept, against the share "
                     "kept."),
               ("img", _plot_coverage(dataset, out / "coverage.png"))]

    if "accept_accepted" in dataset:
        blocks += _acceptance(dataset, out / "risk_coverage.png")

    if "agreement_accuracy" in dataset and dataset.sizes["model"] > 1:
        blocks += [("h2", "Consensus and review"), ("table", _consensus(dataset)),
                   ("img", _plot_agreement(dataset, model, out / "agreement.png"))]

    if previous is not None:
        comparison = _shown(previous if isinstance(previous, Comparison) else compare(evaluated, previous), dataset)
        blocks += [("h2", "Change since the previous evaluation"), ("p", comparison.summary()),
                   ("table", _regressions(comparison))]

    (out / "report.html").write_text(_html(title, blocks), encoding="utf-8")
    markdown = out / "report.md"
    markdown.write_text(_markdown(blocks), encoding="utf-8")
    return markdown


def primary_model(ds: xr.Dataset) -> str:
    models = [str(m) for m in ds["model"].values]
    return CONSENSUS if CONSENSUS in models else models[0]


def distinct_models(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset without its consensus when there is one model besides: the consensus of one
    model is that model's answer, and every table and plot would show it twice."""
    models = [str(m) for m in ds["model"].values]
    if CONSENSUS in models and len(models) == 2:
        return ds.sel(model=[m for m in models if m != CONSENSUS])
    return ds


def _shown(comparison: Comparison, ds: xr.Dataset) -> Comparison:
    """The comparison's rows for the models shown; the consensus rows when none is, as when one
    model is shown and the previous evaluation ran another: then only the final answers compare."""
    table = comparison.table
    shown = table[table["model"].isin([str(m) for m in ds["model"].values])]
    if shown.empty:
        shown = table[table["model"] == CONSENSUS]
    return Comparison(shown.reset_index(drop=True), comparison.threshold, comparison.alpha)


# -- tables ---------------------------------------------------------------------------------------

RATES = ["accuracy", "macro_accuracy", "macro_f1", "coverage", "ece", "confidently_wrong", "review_share",
         "review_error_capture", "review_error_rate", "accuracy_with_review"]


def _about(ds: xr.Dataset, folded: bool) -> list[str]:
    """What was evaluated: run, model specs, labels, calibrations and dates (as `evaluate_run`
    records them), the number of labelled files, and whether the consensus was folded in."""
    lines = [f"{heading}: {ds.attrs[key]}" for key, heading in ABOUT.items() if ds.attrs.get(key)]
    lines.append(f"labelled files: {int(ds['n'].max())}")
    if folded:
        lines.append("one model: its answers are the final answers (consensus), shown once")
    return lines


def _summary(ds: xr.Dataset) -> pd.DataFrame:
    table = summary_table(ds)
    table = table[[c for c in ["n", *RATES] if c in table.columns]].astype({"n": int})
    return _percent(table.reset_index(), [c for c in RATES if c in table.columns])


def _long_tail(ds: xr.Dataset) -> pd.DataFrame:
    accuracy = ds["group_accuracy"].to_pandas()
    macro = ds["group_macro_accuracy"].to_pandas()
    languages = pd.Series(ds["language_group"].values).value_counts()
    table = pd.DataFrame({ds.attrs.get("long_tail", "group"): accuracy.columns,
                          "languages": [int(languages.get(g, 0)) for g in accuracy.columns],
                          "files": ds["group_support"].max("model").values})
    for model in accuracy.index:
        table[f"{model} accuracy"] = _pct(accuracy.loc[model].values)
        table[f"{model} macro"] = _pct(macro.loc[model].values)
    return table


def _consensus(ds: xr.Dataset) -> pd.DataFrame:
    table = ds["agreement_count"].to_pandas().T.add_suffix(" files")
    accuracy = ds["agreement_accuracy"].to_pandas().T.add_suffix(" accuracy")
    table = pd.concat([table, accuracy.apply(_pct)], axis=1)
    return table[sorted(table.columns)].reset_index()


def _misidentified(frame, model: str) -> list[tuple]:
    wrong, total = misidentified_files(frame, model, MISIDENTIFIED)
    blocks = [("h3", f"Misidentified files ({model})")]
    if not total:
        return blocks + [("p", "None: every labelled file got its language.")]
    rest = f"; {total - len(wrong)} more are not listed" if total > len(wrong) else ""
    wrong = wrong.assign(answered=wrong["answered"].fillna("(no answer)"),
                         confidence=[f"{c:.2f}" if pd.notna(c) else "" for c in wrong["confidence"]])
    return blocks + [("p", f"{total} files got another language than their label, or none; most confident "
                           f"first{rest}."),
                     ("table", wrong)]


def _acceptance(ds: xr.Dataset, path: Path) -> list[tuple]:
    """What the review rule in force did (`acceptance_effect`), and its risk-coverage curve."""
    value = {key: float(ds[f"accept_{key}"]) for key in ("files", "accepted", "coverage", "precision", "precision_low",
                                                           "precision_high", "review_queue", "errors_caught")}
    low, high = _pct([value["precision_low"], value["precision_high"]])
    table = pd.DataFrame([{"files": int(value["files"]), "accepted": int(value["accepted"]),
                           "coverage": _pct([value["coverage"]])[0], "precision": _pct([value["precision"]])[0],
                           "95% interval": f"{low} - {high}" if low else "",
                           "review queue": int(value["review_queue"]),
                           "errors it holds": _pct([value["errors_caught"]])[0]}])
    rule = ds.attrs.get("accept_rule", "the rule the run applied")
    return [("h2", "Accepted without review"),
            ("p", f"Review rule: {rule}. Accepted: the answers no review reason sends to a person; their "
                  "precision with its 95% Clopper-Pearson interval; the review queue holds every other file, and "
                  "that share of the wrong answers."),
            ("table", table), ("img", _plot_risk_coverage(ds, path))]


def _regressions(comparison: Comparison) -> pd.DataFrame:
    table = comparison.table
    keep = table["regression"] | table["improvement"] | table["language"].isin(["(all)", "(macro)"])
    shown = table[keep].copy()
    shown["p_adjusted"] = shown["p_adjusted"].map(lambda p: f"{p:.2g}")
    shown["flag"] = np.where(shown["regression"], "REGRESSION", np.where(shown["improvement"], "improved", ""))
    shown = _percent(shown, ["before", "after", "delta", "ci_low", "ci_high"])
    return shown[["model", "language", "n_before", "n_after", "before", "after", "delta", "ci_low", "ci_high",
                  "p_adjusted", "test", "flag"]]


def _pct(values) -> list[str]:
    return ["" if pd.isna(v) else f"{100 * v:.1f}%" for v in np.asarray(values, dtype=float)]


def _percent(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    table = table.copy()
    for column in columns:
        table[column] = _pct(table[column])
    return table


# -- plots ----------------------------------------------------------------------------------------

def _plot_languages(ds: xr.Dataset, model: str, path: Path) -> str:
    table = per_language_table(ds, model)
    table = table[table["support"] > 0]
    fig, ax = _figure(figsize=(8, 1.2 + 0.26 * len(table)))
    y = np.arange(len(table))[::-1]
    colour_of = dict(zip([str(g) for g in ds["group"].values], GROUP_COLOURS))
    colours = [colour_of.get(g, OTHER_COLOUR) for g in table["group"]]
    ax.barh(y, table["recall"], color=colours, height=0.75)
    others = [m for m in ds["model"].values if m != model]
    for other, colour in zip(others, MARKER_COLOURS * len(others)):
        recall = ds["per_language"].sel(model=other, metric="recall", language=table.index.to_numpy())
        ax.plot(recall, y, "o", ms=5, color=colour, markeredgecolor="white", label=str(other))
    ax.set_yticks(y, [f"{lang} ({int(n)})" for lang, n in zip(table.index, table["support"])], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, len(table) - 0.4)
    ax.set_xlabel("accuracy (share of the language's files identified)")
    ax.xaxis.set_ticks_position("both")
    ax.tick_params(axis="x", labeltop=True)
    ax.grid(axis="x", alpha=0.3)
    groups = [g for g in colour_of if g in set(table["group"])]
    handles = [Rectangle((0, 0), 1, 1, color=colour_of[g]) for g in groups]
    labels = groups
    markers, marker_labels = ax.get_legend_handles_labels()
    ax.legend(handles + markers, labels + marker_labels, loc="lower right", fontsize=8, framealpha=0.9)
    ax.set_title(f"Accuracy per language, {model} (files in brackets)")
    return _save(fig, path)


def confusion_shares(ds: xr.Dataset, model: str) -> pd.DataFrame:
    """Share of each true language's files by the answer they got. Rows: the languages with the
    most files; columns: those languages first (the diagonal), then the other answers actually
    given to them, most frequent first, whether or not any file is labelled with them (a model
    that says Dutch for German must show Dutch); the rest as "other", and "no answer"."""
    confusion = ds["confusion"].sel(model=model).to_pandas()
    top = confusion.sum(axis=1).sort_values(ascending=False)
    top = list(top[top > 0].index[:CONFUSION_LANGUAGES])
    rows = confusion.loc[top]
    given = rows.drop(columns=top + [NONE]).sum().sort_values(ascending=False, kind="stable")
    extra = list(given[given > 0].index[:CONFUSION_OTHERS])
    shown = rows[top + extra].copy()
    shown["other"] = rows.drop(columns=top + extra + [NONE]).sum(axis=1)
    shown["no answer"] = rows[NONE]
    shown = shown.drop(columns=[c for c in ("other", "no answer") if not shown[c].any()])
    return shown.div(rows.sum(axis=1), axis=0).rename_axis(index="true", columns="answered")


def _plot_confusion(ds: xr.Dataset, model: str, path: Path) -> str:
    shown = confusion_shares(ds, model)
    top, shares = list(shown.index), shown.to_numpy()
    size = 2.5 + 0.5 * len(shown.columns)
    fig, ax = _figure(figsize=(size, size * len(top) / len(shown.columns) + 1))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), share in np.ndenumerate(shares):
        if share >= 0.005:
            ax.text(j, i, f"{100 * share:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if share > 0.6 else "black")
    ax.set_xticks(range(len(shown.columns)), shown.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(top)), top)
    ax.set_xlabel("answered")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion (% of each true language), {model}")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, shrink=0.8)
    return _save(fig, path)


def _plot_reliability(ds: xr.Dataset, path: Path) -> str:
    models = [str(m) for m in ds["model"].values]
    calibrated = "calibration_ece" in ds
    fig = Figure(figsize=(3.6 * len(models), 5.2), layout="tight")
    axes = fig.subplots(2, len(models), squeeze=False, gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    for k, model in enumerate(models):
        curve, counts = axes[0, k], axes[1, k]
        curve.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        has_cal = calibrated and not np.isnan(ds["calibration_ece"].sel(model=model)).all()
        if has_cal:
            at = ds.sel(model=model)
            edges = ds["calibration_bin_lower"].values, ds["calibration_bin_upper"].values
            stages = [(at["calibration_confidence"].sel(stage=s), at["calibration_accuracy"].sel(stage=s),
                       at["calibration_count"].sel(stage=s), float(at["calibration_ece"].sel(stage=s)), s)
                      for s in ("raw", "calibrated")]
        else:
            edges = ds["bin_lower"].values, ds["bin_upper"].values
            stages = [(ds["reliability_confidence"].sel(model=model), ds["reliability_accuracy"].sel(model=model),
                       ds["reliability_count"].sel(model=model), float(ds["ece"].sel(model=model)), "raw")]
        centres, width = (edges[0] + edges[1]) / 2, edges[1] - edges[0]
        for (confidence, accuracy, count, ece, stage), colour in zip(stages, ["#d9534f", "#2b6cb0"]):
            curve.plot(confidence, accuracy, "o-", color=colour, ms=3, label=f"{stage}: ECE {100 * ece:.1f}%")
            counts.bar(centres, count, width=width, color=colour, alpha=0.5)
        curve.set_xlim(0, 1)
        curve.set_ylim(0, 1)
        curve.set_title(f"{model} ({len(centres)} bins)")
        curve.legend(loc="upper left", fontsize=8)
        curve.grid(alpha=0.3)
        counts.set_xlabel("confidence")
    axes[0, 0].set_ylabel("accuracy")
    axes[1, 0].set_ylabel("files")
    fig.suptitle("Reliability" + (" before and after calibration (held-out files)" if calibrated else ""))
    return _save(fig, path)


def _plot_coverage(ds: xr.Dataset, path: Path) -> str:
    fig, ax = _figure(figsize=(6, 4.2))
    thresholds = ds["threshold"].values
    for model in ds["model"].values:
        coverage = ds["selective_coverage"].sel(model=model).values
        accuracy = ds["selective_accuracy"].sel(model=model).values
        (line,) = ax.plot(coverage, accuracy, label=str(model))
        for mark in (0.5, 0.8):
            k = int(np.argmin(np.abs(thresholds - mark)))
            if not np.isnan(accuracy[k]):
                ax.plot(coverage[k], accuracy[k], "o", color=line.get_color(), ms=4)
                ax.annotate(f"≥{mark:g}", (coverage[k], accuracy[k]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("coverage (share of files answered)")
    ax.set_ylabel("accuracy of the answered files")
    ax.set_title("Accuracy against coverage (rejecting low confidence)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_risk_coverage(ds: xr.Dataset, path: Path) -> str:
    fig, ax = _figure(figsize=(6, 4.2))
    coverage, precision = ds["risk_coverage_coverage"].values, ds["risk_coverage_precision"].values
    ax.plot(coverage, precision, color="#2b6cb0", label="accepting at each threshold (files no other reason sends)")
    ax.plot(float(ds["accept_coverage"]), float(ds["accept_precision"]), "o", color="#e8590c", ms=6,
            label="the rule in force")
    if "accept_target" in ds.attrs:
        ax.axhline(ds.attrs["accept_target"], color="grey", ls="--", lw=0.8,
                   label=f"promised precision {100 * ds.attrs['accept_target']:.4g}%")
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("coverage (share of files accepted without review)")
    ax.set_ylabel("precision of the accepted files")
    ax.set_title("Risk-coverage of the accept threshold")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, path)


def _plot_agreement(ds: xr.Dataset, model: str, path: Path) -> str:
    accuracy = ds["agreement_accuracy"].sel(model=model).to_pandas()
    count = ds["agreement_count"].sel(model=model).to_pandas()
    order = [a for a in ("unanimous", "majority", "split", "single", "none") if a in accuracy.index]
    order += [a for a in accuracy.index if a not in order]
    order = [a for a in order if count[a] > 0]
    fig, ax = _figure(figsize=(1.5 + 1.1 * len(order), 3.8))
    bars = ax.bar(order, accuracy[order].fillna(0), color="#2b6cb0")
    total = count.sum()
    for bar, agreement in zip(bars, order):
        text = f"{100 * accuracy[agreement]:.0f}%\n{count[agreement]} files ({100 * count[agreement] / total:.0f}%)"
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    overall = float(ds["accuracy"].sel(model=model))
    ax.axhline(overall, color="grey", ls="--", lw=0.8, label=f"overall {100 * overall:.0f}%")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_ylim(0, 1.2)
    ax.set_ylabel(f"accuracy of {model}")
    ax.set_xlabel("agreement between models")
    ax.set_title("Accuracy by model agreement")
    return _save(fig, path)


def _figure(figsize: tuple[float, float]) -> tuple[Figure, object]:
    fig = Figure(figsize=figsize, layout="tight")
    return fig, fig.subplots()


def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path, dpi=DPI)
    return path.name


# -- rendering ------------------------------------------------------------------------------------

def _markdown(blocks: list[tuple]) -> str:
    lines = []
    for kind, *content in blocks:
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + content[0], ""]
        elif kind == "p":
            lines += [content[0], ""]
        elif kind == "list":
            lines += [f"- {item}" for item in content[0]] + [""]
        elif kind == "img":
            lines += [f"![{content[0]}]({content[0]})", ""]
        else:
            table = content[0].astype(str)
            lines.append("| " + " | ".join(map(str, table.columns)) + " |")
            lines.append("|" + "---|" * len(table.columns))
            lines += ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |" for row in table.to_numpy()]
            lines.append("")
    return "\n".join(lines)


def _html(title: str, blocks: list[tuple]) -> str:
    body = []
    for kind, *content in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{html.escape(content[0])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{html.escape(content[0])}</p>".replace("\n", "<br>"))
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in content[0]) + "</ul>")
        elif kind == "img":
            body.append(f'<img src="{html.escape(content[0])}" alt="{html.escape(content[0])}">')
        else:
            body.append(content[0].to_html(index=False, border=0, classes="table", na_rep=""))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
             "td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
