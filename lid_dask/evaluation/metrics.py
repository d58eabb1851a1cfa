"""Evaluation metrics from Dask aggregations, returned as one xarray Dataset.

Input: a frame (Dask or pandas) with one row per file and model: ``uri, model, predicted,
confidence, label`` and optionally ``agreement`` and ``needs_review`` (see `frames`). ``model``
is a model's name or ``consensus`` for the final answer. A null ``predicted`` (failed file, no
speech) counts as wrong; ``coverage`` says how often there was an answer.

Why it scales: every metric here is a function of a few small count tables (model x true x
predicted; model x confidence bin; model x threshold; model x agreement), so the rows are only
streamed through group-by sums, partition by partition, and only those tables reach pandas.
Millions of rows never need to be in memory at once.

Conventions (chosen to match scikit-learn with ``labels=`` the languages a model saw or said):
- per language: recall = accuracy on that language's files (NaN without support), precision NaN
  when never predicted, F1 = 2 tp / (support + predicted), NaN when both are zero;
- macro accuracy = mean recall over languages with support (balanced accuracy): every language
  counts the same, so the long tail is not drowned by English; macro F1 = mean F1 over the
  languages the model saw or predicted, so predicting languages that are not there costs;
- calibration uses answered rows with a confidence. ECE always has 15 equal-width bins
  [k/15, (k+1)/15) (1.0 falls in the last one), the usual count, so it compares between
  evaluations of any size; the reliability curve's bins follow the number of files
  (`reliability_bins`). Both come from one histogram of 120 bins, which 15 and every curve
  bin count divide;
- long tail: languages are grouped by how many labelled files they have (`_groups`), each
  group named by its range (``≥40 files``), or by the resource levels given;
- coverage curve: at threshold t a file is answered when predicted and confidence >= t;
  coverage is answered / all files, accuracy is correct / answered.
"""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import xarray as xr

from lid_dask.evaluation.labels import normalise_label

NONE = "<none>"  # the `predicted` value of files that got no answer
CONSENSUS = "consensus"
METRICS = ("precision", "recall", "f1", "support", "predicted", "correct")
DEFAULT_THRESHOLDS = np.round(np.arange(100) / 100, 2)
FINE_BINS = 120  # the confidence histogram that is aggregated; ECE_BINS and every CURVE_BINS divide it
ECE_BINS = 15
CURVE_BINS = (5, 6, 8, 10, 12, 15)
FILES_PER_BIN = 30
NOT_LABELLED = "no labelled files"  # long-tail group of languages only ever answered
_SUMS = ["rows", "correct", "answered", "confident_wrong", "review", "review_wrong"]


def evaluate(frame, *, bins: int | None = None, thresholds=DEFAULT_THRESHOLDS, confident: float = 0.8,
             resource_levels: dict[str, str] | None = None, chunksize: int = 1_000_000) -> xr.Dataset:
    """All metrics of every model in `frame`, as an xarray Dataset (see the module docstring).

    `bins`: of the reliability curve, one of `CURVE_BINS`; by default chosen from the number of
    labelled files (`reliability_bins`). `resource_levels` maps languages to a level
    (``high``/``low``, ...) for the long-tail view; without it, languages are grouped by their
    number of files. `confident`: the confidence above which a wrong answer counts as
    "confidently wrong".
    """
    check_curve_bins(bins)
    thresholds = np.asarray(thresholds, dtype=float)
    rows = prepared(frame, thresholds=thresholds, confident=confident, chunksize=chunksize)
    tables = dask.compute(
        rows.groupby(["model", "label", "predicted"]).size(),
        rows.groupby("model")[_SUMS].sum(),
        rows.groupby(["model", "conf_bin"])[["rows", "conf", "correct"]].sum(),
        rows.groupby(["model", "thr_bin"])[["rows", "correct"]].sum(),
        rows.groupby(["model", "agreement"])[["rows", "correct"]].sum(),
    )
    return _from_tables(*tables, bins=bins, thresholds=thresholds, confident=confident,
                       resource_levels=resource_levels, has_agreement="agreement" in frame.columns,
                       has_review="needs_review" in frame.columns)


def prepared(frame, *, thresholds=DEFAULT_THRESHOLDS, confident: float = 0.8,
             chunksize: int = 1_000_000) -> dd.DataFrame:
    """The rows with their per-row indicators (correct, confidence bin of `FINE_BINS`, ...),
    ready for group-by sums."""
    ddf = as_dask(frame, chunksize)
    thresholds = np.asarray(thresholds, dtype=float)
    return ddf.map_partitions(_indicators, thresholds, confident, meta=_indicators(ddf._meta, thresholds, confident))


def as_dask(frame, chunksize: int = 1_000_000) -> dd.DataFrame:
    return frame if isinstance(frame, dd.DataFrame) else dd.from_pandas(frame, chunksize=chunksize)


def _indicators(part: pd.DataFrame, thresholds: np.ndarray, confident: float) -> pd.DataFrame:
    part = part[part["label"].notna()]  # not labelled: nothing to evaluate
    predicted = part["predicted"].astype(object).where(part["predicted"].notna(), NONE).astype(str)
    label = part["label"].astype(str)
    answered = (predicted != NONE).to_numpy()
    correct = (predicted == label).to_numpy() & answered
    conf = pd.to_numeric(part["confidence"], errors="coerce").to_numpy(dtype=float)
    scored = answered & ~np.isnan(conf)
    conf = np.where(scored, np.clip(conf, 0.0, 1.0), 0.0)
    conf_bin = np.where(scored, np.minimum((conf * FINE_BINS).astype(int), FINE_BINS - 1), -1)
    thr_bin = np.where(scored, np.searchsorted(thresholds, conf, side="right") - 1, -1)
    review = _flag(part["needs_review"]) if "needs_review" in part.columns else np.zeros(len(part), dtype=bool)
    agreement = (part["agreement"].astype(object).where(part["agreement"].notna(), "none").astype(str)
                 if "agreement" in part.columns else pd.Series("", index=part.index, dtype=str))
    return pd.DataFrame({
        "model": part["model"].astype(str), "label": label, "predicted": predicted, "agreement": agreement,
        "rows": np.ones(len(part), dtype=np.int64), "correct": correct.astype(np.int64),
        "answered": answered.astype(np.int64), "conf": conf, "conf_bin": conf_bin.astype(np.int64),
        "thr_bin": thr_bin.astype(np.int64),
        "confident_wrong": (scored & ~correct & (conf >= confident)).astype(np.int64),
        "review": review.astype(np.int64), "review_wrong": (review & ~correct).astype(np.int64),
    }, index=part.index)


def _flag(values: pd.Series) -> np.ndarray:
    """A boolean column as read back from a database: bool, 0/1, or text ("True", "1"); null is False."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.fillna(False).to_numpy(dtype=bool)
    return values.astype(str).str.lower().isin(["true", "1", "1.0", "t"]).to_numpy()


def _from_tables(counts: pd.Series, per_model: pd.DataFrame, reliability: pd.DataFrame, selective: pd.DataFrame,
                agreement: pd.DataFrame, *, bins: int | None, thresholds: np.ndarray, confident: float,
                resource_levels: dict[str, str] | None, has_agreement: bool, has_review: bool) -> xr.Dataset:
    """Build the Dataset from the small aggregated tables (pure pandas/numpy)."""
    if per_model.empty:
        raise ValueError("nothing to evaluate: no row has a label (do the uris of labels and run match?)")
    models = sorted(map(str, per_model.index))
    labels = set(counts.index.get_level_values("label")) | set(counts.index.get_level_values("predicted"))
    languages = sorted(map(str, labels - {NONE}))
    columns = [*languages, NONE]
    confusion = np.zeros((len(models), len(languages), len(columns)), dtype=np.int64)
    m_index = {m: i for i, m in enumerate(models)}
    l_index = {lang: i for i, lang in enumerate(columns)}
    for (model, true, pred), count in counts.items():
        confusion[m_index[model], l_index[true], l_index[pred]] += count

    n_lang = len(languages)
    tp = confusion[:, np.arange(n_lang), np.arange(n_lang)].astype(float)
    support = confusion.sum(axis=2).astype(float)
    said = confusion[:, :, :n_lang].sum(axis=1).astype(float)
    recall = _ratio(tp, support)
    precision = _ratio(tp, said)
    f1 = _ratio(2 * tp, support + said)
    sums = per_model.reindex(models).astype(float)
    n = sums["rows"].to_numpy()
    correct = sums["correct"].to_numpy()
    bins = bins or reliability_bins(int(n.max()))

    group_of, groups = _groups(languages, support.max(axis=0, initial=0), resource_levels)
    in_group = np.array([[g == group for g in group_of] for group in groups], dtype=bool).reshape(len(groups), n_lang)

    rel = reliability_arrays(reliability, models, bins)
    sel = _grid(selective, "thr_bin", models, np.arange(len(thresholds)))
    answered_at = sel["rows"][:, ::-1].cumsum(axis=1)[:, ::-1]
    correct_at = sel["correct"][:, ::-1].cumsum(axis=1)[:, ::-1]

    data = {
        "per_language": (("model", "language", "metric"), np.stack([precision, recall, f1, support, said, tp], -1)),
        "confusion": (("model", "true", "predicted"), confusion),
        "n": ("model", n.astype(np.int64)),
        "accuracy": ("model", _ratio(correct, n)),
        "macro_accuracy": ("model", _nanmean(recall)),
        "macro_f1": ("model", _nanmean(f1)),
        "coverage": ("model", _ratio(sums["answered"].to_numpy(), n)),
        "ece": ("model", rel["ece"]),
        "confidently_wrong": ("model", _ratio(sums["confident_wrong"].to_numpy(), n)),
        "reliability_count": (("model", "bin"), rel["count"]),
        "reliability_confidence": (("model", "bin"), rel["confidence"]),
        "reliability_accuracy": (("model", "bin"), rel["accuracy"]),
        "selective_coverage": (("model", "threshold"), _ratio(answered_at, n[:, None])),
        "selective_accuracy": (("model", "threshold"), _ratio(correct_at, answered_at)),
        "group_support": (("model", "group"), (support @ in_group.T.astype(float)).astype(np.int64)),
        "group_accuracy": (("model", "group"), _ratio(tp @ in_group.T, support @ in_group.T)),
        "group_macro_accuracy": (("model", "group"), np.stack([_nanmean(recall[:, mask]) for mask in in_group],
                                                              -1).reshape(len(models), -1)),
    }
    coords = {"model": models, "language": languages, "metric": list(METRICS), "true": languages,
              "predicted": columns, **bin_coords(bins), "threshold": thresholds, "group": groups,
              "language_group": ("language", np.array(group_of, dtype=str))}
    if has_agreement:
        values = sorted(set(agreement.index.get_level_values("agreement")))
        agree = _grid(agreement, "agreement", models, values)
        coords["agreement"] = values
        data["agreement_count"] = (("model", "agreement"), agree["rows"].astype(np.int64))
        data["agreement_accuracy"] = (("model", "agreement"), _ratio(agree["correct"], agree["rows"]))
    if has_review:
        review, review_wrong = sums["review"].to_numpy(), sums["review_wrong"].to_numpy()
        data["review_share"] = ("model", _ratio(review, n))
        data["review_error_capture"] = ("model", _ratio(review_wrong, n - correct))
        data["review_error_rate"] = ("model", _ratio(review_wrong, review))
        data["accuracy_with_review"] = ("model", _ratio(correct + review_wrong, n))
    attrs = {"confident_threshold": confident, "bins": bins,
             "long_tail": "labelled files per language" if resource_levels is None else "resource level"}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def reliability_arrays(table: pd.DataFrame, models: list[str], bins: int) -> dict[str, np.ndarray]:
    """Reliability curve in `bins` bins, and ECE in `ECE_BINS`, per model from (model, conf_bin)
    sums of rows, conf, correct over the `FINE_BINS` histogram.

    ECE = sum over bins of (bin count / scored rows) * |bin accuracy - bin mean confidence|,
    which is sum |correct - confidence sums| / scored rows.
    """
    fine = _grid(table, "conf_bin", models, np.arange(FINE_BINS))

    def merged(k: int) -> dict[str, np.ndarray]:  # k bins of FINE_BINS // k neighbours each
        return {column: values.reshape(len(models), k, -1).sum(axis=2) for column, values in fine.items()}

    curve, ece = merged(bins), merged(ECE_BINS)
    return {"count": curve["rows"].astype(np.int64), "confidence": _ratio(curve["conf"], curve["rows"]),
            "accuracy": _ratio(curve["correct"], curve["rows"]),
            "ece": _ratio(np.abs(ece["correct"] - ece["conf"]).sum(axis=1), ece["rows"].sum(axis=1))}


def reliability_bins(files: int) -> int:
    """Bins of a reliability curve over `files` files: files / 30, rounded to the nearest of
    `CURVE_BINS` (5 to 15, the counts that divide the 120-bin histogram). With 30 files a bin
    its accuracy has a standard error of at most 9 points, so the curve shows miscalibration
    rather than noise; 15 bins over 24 files would leave most with one file or none. At least
    5 keeps a curve, at most 15 (the ECE's own bins) keeps it readable."""
    return min(CURVE_BINS, key=lambda bins: (abs(bins - files / FILES_PER_BIN), bins))


def check_curve_bins(bins: int | None) -> None:
    if bins is not None and bins not in CURVE_BINS:
        raise ValueError(f"a reliability curve has {', '.join(map(str, CURVE_BINS))} bins, not {bins}")


def bin_coords(bins: int, dim: str = "bin") -> dict:
    edges = np.linspace(0.0, 1.0, bins + 1)
    return {dim: np.arange(bins), f"{dim}_lower": (dim, edges[:-1]), f"{dim}_upper": (dim, edges[1:])}


def _grid(table: pd.DataFrame, key: str, models: list[str], values) -> dict[str, np.ndarray]:
    """A (model, key) -> sums table as dense [model, value] arrays (missing cells are 0)."""
    index = pd.MultiIndex.from_product([models, list(values)], names=["model", key])
    dense = table.reindex(index, fill_value=0)
    return {c: dense[c].to_numpy(dtype=float).reshape(len(models), -1) for c in table.columns}


def _ratio(num, den) -> np.ndarray:
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN (no warning) where nothing is left."""
    present = ~np.isnan(values)
    return _ratio(np.where(present, values, 0.0).sum(axis=-1), present.sum(axis=-1))


def _groups(languages: list[str], support: np.ndarray,
            resource_levels: dict[str, str] | None) -> tuple[list[str], list[str]]:
    """Long-tail group of each language, and the groups: its resource level, or how many
    labelled files it has.

    Without levels, the labelled languages ordered by support are split into thirds, but
    languages with the same support stay together (a third's edge that falls among them moves
    the whole tie into the middle group), so no two groups hold the same support. Each group is
    named by the supports it holds (``≥40 files``, ``12-39 files``, ``3 files``), most files
    first, so a reader sees what "long tail" means in this set; languages only ever answered
    are `NOT_LABELLED`.
    """
    if resource_levels is not None:
        levels = {normalise_label(k) or k: v for k, v in resource_levels.items()}
        group = [levels.get(lang, "unknown") for lang in languages]
        return group, sorted(set(group))
    counts = sorted(int(s) for s in support if s > 0)
    if not counts:
        return [NOT_LABELLED] * len(languages), []
    third, two_thirds = len(counts) // 3, 2 * len(counts) // 3
    fewer_than, more_than = counts[third], counts[two_thirds - 1] if two_thirds else counts[-1]
    level = [None if s == 0 else 0 if s > more_than else 2 if s < fewer_than else 1 for s in support]
    members = [[int(s) for s, k in zip(support, level) if k == rank] for rank in range(3)]
    names = [None if not m else f"≥{min(m)} files" if rank == 0 else _files(min(m), max(m))
             for rank, m in enumerate(members)]
    return [NOT_LABELLED if k is None else names[k] for k in level], [name for name in names if name]


def _files(least: int, most: int) -> str:
    return f"{least} file{'s' * (least != 1)}" if least == most else f"{least}-{most} files"


def expected_calibration_error(confidence, correct, bins: int = ECE_BINS) -> float:
    """ECE of in-memory arrays, with the same binning as `evaluate` (for calibration and tests)."""
    confidence = np.clip(np.asarray(confidence, dtype=float), 0.0, 1.0)
    correct = np.asarray(correct, dtype=float)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = np.bincount(index, correct, bins) - np.bincount(index, confidence, bins)
    return float(np.abs(gap).sum() / len(confidence)) if len(confidence) else float("nan")


def summary_table(ds: xr.Dataset) -> pd.DataFrame:
    """One row per model with its scalar metrics."""
    names = [v for v in ds.data_vars if ds[v].dims == ("model",)]
    return pd.DataFrame({name: ds[name].to_series() for name in names})


def per_language_table(ds: xr.Dataset, model: str) -> pd.DataFrame:
    """One row per language the model saw or said: support, precision, recall, F1, long-tail group;
    sorted by support (largest first)."""
    table = ds["per_language"].sel(model=model).to_pandas()
    table["group"] = ds["language_group"].to_series()
    table = table[(table["support"] > 0) | (table["predicted"] > 0)]
    return table.sort_values(["support", "recall"], ascending=[False, True]).astype(
        {"support": int, "predicted": int, "correct": int})


def misidentified_files(frame, model: str, limit: int = 50) -> tuple[pd.DataFrame, int]:
    """The files `model` did not identify (another language, or no answer), most confident first:
    at most `limit` rows of uri, true, answered (null: no answer), confidence; and how many
    there are. Per-partition top-`limit` (Dask's nlargest): no more rows than that reach pandas."""
    ddf = as_dask(frame)
    rows = ddf[(ddf["model"] == model) & ~ddf["label"].isna()]
    wrong = rows[~(rows["predicted"] == rows["label"]).fillna(False).astype(bool)]
    wrong = wrong.assign(order=wrong["confidence"].astype(float).fillna(-1.0))
    total, top = dask.compute(wrong.shape[0], wrong.nlargest(limit, "order"))
    top = top.sort_values(["order", "uri"], ascending=[False, True])
    table = pd.DataFrame({"uri": top["uri"], "true": top["label"], "answered": top["predicted"],
                          "confidence": top["confidence"].astype(float)})
    return table.reset_index(drop=True), int(total)


def top_confusions(ds: xr.Dataset, model: str, n: int = 10) -> pd.DataFrame:
    """The `n` largest off-diagonal cells: true, predicted (``<none>``: no answer), count, and
    share of the true language's files."""
    cells = ds["confusion"].sel(model=model).to_series()
    support = cells.groupby(level="true").sum()
    true, predicted = cells.index.get_level_values("true"), cells.index.get_level_values("predicted")
    off = cells[(true != predicted) & (cells > 0)]
    table = off.rename("count").reset_index()
    table["share"] = table["count"] / table["true"].map(support).astype(float)
    table = table.sort_values(["count", "true", "predicted"], ascending=[False, True, True])
    return table.head(n).reset_index(drop=True)
