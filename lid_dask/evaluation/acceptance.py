"""Accept rules on a run's labelled files: fit one at a target precision, store it, and measure the
rule a run's answers went through. The method is in `lid_dask.evaluation.selective`; how runs apply
a stored rule, in `lid_dask.acceptance`.

    fitted = fit_accept_run(run, labels, target=0.97, confidence_level=0.95)
    fitted.rule, fitted.performance      # the threshold, and what it does on these labelled files
    fitted.curve.plot(x="coverage", y="precision")   # every threshold of the grid
    store_accept_rule(run, fitted, "my-labels")      # new runs of these models apply it

The rule is fitted on the confidence new runs will produce: the consensus under the calibrations
stored now (the ones `Run.create` applies), which may differ from those the labelled run applied,
e.g. when ``lid-dask calibrate`` has just stored one. Then each file's consensus is worked out
again with the engine's own `combine_models`, from each model's answer in the ledger: its top
probability mapped back through the calibration the run applied and forward through the new one,
its other languages rescaled to share the rest (as `consensus.calibrate` does). With one model this
is exact. With several, the ledger keeps each model's five most likely languages, and a language
outside them counts as 0 for that model: the consensus confidence can come out lower than a run
would give, by at most that model's fifth probability over the number of models.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import dask
import numpy as np
import pandas as pd
import xarray as xr

from lid_dask.acceptance import rule_settings
from lid_dask.calibration import Calibration, PlattScaling, from_dict
from lid_dask.evaluation.calibration import applied_calibrations
from lid_dask.config import IdentifyConfig
from lid_dask.consensus import ModelOutput, combine_models
from lid_dask.evaluation.labels import LabelSet, canonical_uri, normalise_label
from lid_dask.evaluation.metrics import CONSENSUS, _flag, as_dask
from lid_dask.evaluation.selective import GRID, AcceptRule, fit_accept_rule, performance, risk_coverage
from lid_dask.ledger.schema import DEAD, DONE
from lid_dask.models import ModelSpec
from lid_dask.results import ModelVerdict
from lid_dask.runs import Run
from lid_dask.vocabulary import ReviewReason


@dataclass
class FittedRule:
    """An accept rule fitted on a run's labelled files, with what it is about."""

    rule: AcceptRule
    performance: dict  # `rule_performance` on the labelled files (precision with interval, coverage, ...)
    curve: pd.DataFrame  # threshold, coverage, precision, accepted: on the labelled files, at each grid threshold
    files: pd.DataFrame  # per labelled file: uri, label, predicted, confidence, eligible, correct
    models: list[dict]  # [{name, model_sha256}] of the labelled run
    calibrations: dict[str, int | None]  # the stored calibration each model's confidence went through
    settings: dict  # the engine settings it holds for (`lid_dask.acceptance.RULE_SETTINGS`)
    run_id: int

    @property
    def labels_sha256(self) -> str:
        """Which labelled files, labelled how: a digest of the sorted (uri, label) pairs."""
        lines = sorted(f"{uri}\t{label}\n" for uri, label in zip(self.files["uri"], self.files["label"]))
        return hashlib.sha256("".join(lines).encode()).hexdigest()


def fit_accept_run(run: Run, labels: LabelSet, target: float = 0.97, confidence_level: float = 0.95) -> FittedRule:
    """The accept rule for new runs of `run`'s models, fitted on its labelled files with the
    confidence new runs give (see the module docstring)."""
    info = run.ledger.get_run(run.name)
    config = IdentifyConfig.from_dict(info.config.get("identify", {}))
    files = labelled_answers(run, labels)
    rule = fit_accept_rule(files["confidence"], files["correct"], target, confidence_level, files["eligible"])
    curve = pd.DataFrame(risk_coverage(files["confidence"], files["correct"], files["eligible"]))
    loaded = {m.get("name"): m.get("model_sha256") for m in (info.fingerprint or {}).get("models", [])}
    names = _names(config)
    return FittedRule(rule, performance_of(rule, files, confidence_level), curve, files,
                      [{"name": m, "model_sha256": loaded.get(m)} for m in names], new_calibrations(run, names),
                      rule_settings(config), info.id)


def labelled_answers(run: Run, labels: LabelSet) -> pd.DataFrame:
    """Per labelled file of the run in a final state: uri, label, predicted, confidence, eligible (no
    review reason but the confidence) and correct, with the confidence new runs give: the run's own
    answers when it applied the calibrations new runs apply, else worked out again under those."""
    info = run.ledger.get_run(run.name)
    config = IdentifyConfig.from_dict(info.config.get("identify", {}))
    applied = applied_calibrations(info)
    new = run.ledger.evaluations.latest_calibrations(_names(config))
    if {m: e["id"] for m, e in new.items()} == {m: e.get("id") for m, e in applied.items()}:
        return _labelled(_stored_answers(run), labels)
    return _labelled(_recomputed_answers(run, config, {m: from_dict(e["params"]) for m, e in applied.items()},
                                         {m: from_dict(e["params"]) for m, e in new.items()}), labels)


def new_calibrations(run: Run, names: list[str]) -> dict[str, int | None]:
    """The stored calibration each model's confidence goes through in new runs (None: its own)."""
    latest = run.ledger.evaluations.latest_calibrations(names)
    return {name: (latest.get(name) or {}).get("id") for name in names}


def _names(config: IdentifyConfig) -> list[str]:
    return [ModelSpec.parse(m).name for m in config.models]


def performance_of(rule: AcceptRule, files: pd.DataFrame, level: float = 0.95) -> dict:
    """`rule_performance` of `rule` on `files` (as `labelled_answers` gives them), e.g. files it
    was not fitted on."""
    accepted = files["eligible"].to_numpy() & rule.accepts(files["confidence"].to_numpy())
    correct = files["correct"].to_numpy()
    return performance(len(files), int(accepted.sum()), int(correct[accepted].sum()), int((~correct).sum()), level)


def store_accept_rule(run: Run, fitted: FittedRule, dataset: str) -> int:
    """Store the rule in the ledger: new runs of the same models, calibrations and settings apply it."""
    return run.ledger.evaluations.save_accept_rule(fitted.models, fitted.calibrations, fitted.settings,
                                                   fitted.rule.to_dict(), dataset, fitted.run_id,
                                                   fitted.labels_sha256)


def _stored_answers(run: Run) -> pd.DataFrame:
    """The run's answers as they are: uri, predicted, confidence, eligible (files in a final state)."""
    results = run.results()
    results = results[results["state"].isin([DONE, DEAD])]
    answered = results["language"].notna() & results["confidence"].notna()
    return pd.DataFrame({"uri": results["uri"], "predicted": results["language"], "confidence": results["confidence"],
                         "eligible": answered & ~results["review_reasons"].map(_structural_text).astype(bool)})


def _recomputed_answers(run: Run, config: IdentifyConfig, applied: dict[str, Calibration],
                        new: dict[str, Calibration]) -> pd.DataFrame:
    """The consensus each file of the run gets under the `new` calibrations instead of the `applied`
    ones (see the module docstring): uri, predicted, confidence, eligible."""
    for model, calibration in {**applied, **new}.items():
        if not isinstance(calibration, PlattScaling):
            raise ValueError(f"{model} has a {calibration.to_dict()['method']} calibration, which reshapes whole "
                             "distributions the ledger does not keep: fit the accept rule on a run made with the "
                             "calibrations new runs apply")
    results = run.results()
    results = results[results["state"].isin([DONE, DEAD])]
    predictions = run.ledger.predictions_frame(run.info.id)
    decisions = {}
    for uri, rows in predictions.groupby("uri", sort=False):
        outputs = [_recalibrated(row, applied.get(row.model), new.get(row.model)) for row in rows.itertuples()]
        decisions[uri] = combine_models(outputs, config.consensus)
    language = results["uri"].map(lambda uri: decisions[uri].language if uri in decisions else None)
    confidence = results["uri"].map(lambda uri: decisions[uri].confidence if uri in decisions else np.nan)
    eligible = results["uri"].map(lambda uri: uri in decisions and not _structural(decisions[uri].reasons))
    return pd.DataFrame({"uri": results["uri"], "predicted": language, "confidence": confidence.astype(float),
                         "eligible": eligible.astype(bool)})


def _recalibrated(row, applied: PlattScaling | None, new: PlattScaling | None) -> ModelOutput:
    """A model's stored answer with its top probability taken back to the model's own (through the
    inverse of `applied`) and through `new`, the other languages rescaled to share the rest."""
    distribution = {**(row.top or {}), row.language: row.probability}
    own = row.probability if applied is None else float(PlattScaling(1 / applied.a, -applied.b / applied.a,
                                                                     applied.n).apply(row.probability))
    top = own if new is None else float(new.apply(own))
    scale = (1 - top) / (1 - row.probability) if row.probability < 1 else 0.0
    distribution = {language: top if language == row.language else p * scale for language, p in distribution.items()}
    best = max(distribution, key=distribution.get)
    verdict = ModelVerdict(row.model, best, distribution[best], distribution, bool(row.windows_disagree))
    return ModelOutput(verdict, distribution)


def _structural(reasons) -> bool:
    """Whether a review reason other than the confidence sends the file to a person."""
    return any(not ReviewReason(r).from_confidence for r in reasons)


def _structural_text(reasons) -> bool:
    """`_structural` of reasons as the ledger keeps them: comma-separated, or null."""
    return _structural(filter(None, reasons.split(","))) if isinstance(reasons, str) else False


def _labelled(answers: pd.DataFrame, labels: LabelSet) -> pd.DataFrame:
    """The answers of the labelled files, with whether each is right (labels' base languages)."""
    truth = labels.frame[["uri", "language"]].rename(columns={"language": "label"})
    files = answers.assign(uri=answers["uri"].map(canonical_uri)).merge(truth, on="uri", how="inner")
    predicted = files["predicted"].map(lambda p: (normalise_label(str(p)) or p) if isinstance(p, str) else None)
    return files.assign(predicted=predicted, correct=(predicted == files["label"]).to_numpy(dtype=bool),
                        eligible=files["eligible"].astype(bool))[
        ["uri", "label", "predicted", "confidence", "eligible", "correct"]].reset_index(drop=True)


def acceptance_effect(frame, level: float = 0.95) -> xr.Dataset:
    """What the review rule a run's answers went through did on its labelled files, from the
    consensus rows of its evaluation frame (with ``review_reasons``): accepted files (no review
    reason) with their precision and its two-sided Clopper-Pearson interval at `level`, coverage,
    review queue, share of errors caught; and the risk-coverage curve of the files no other reason
    sends to review, at each threshold of the grid. Only count tables are computed, never the rows.
    """
    rows = as_dask(frame)
    rows = rows[rows["model"] == CONSENSUS]
    (table,) = dask.compute(rows.map_partitions(_accept_indicators, meta=_accept_indicators(rows._meta))
                            .groupby("bin").sum())
    totals = table.sum()
    figures = performance(int(totals["files"]), int(totals["accepted"]), int(totals["accepted_right"]),
                          int(totals["files"] - totals["right"]), level)
    passed = table.drop(index=len(GRID), errors="ignore").reindex(range(len(GRID)), fill_value=0).cumsum()
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(passed["eligible"] > 0, passed["eligible_right"] / passed["eligible"], np.nan)
    ds = xr.Dataset({f"accept_{key}": float(value) for key, value in figures.items()})
    return ds.assign({
        "risk_coverage_coverage": ("accept_threshold", passed["eligible"].to_numpy() / max(1, int(totals["files"]))),
        "risk_coverage_precision": ("accept_threshold", precision.astype(float)),
        "risk_coverage_accepted": ("accept_threshold", passed["eligible"].to_numpy().astype(np.int64)),
    }).assign_coords(accept_threshold=GRID)


def describe(rule: dict | None, low_confidence: float, refused: str | None = None) -> str:
    """One line for the review rule in force (a run-settings entry; None: the default rule, with its
    `low_confidence`), and why a stored rule was refused."""
    if rule is None:
        default = f"the default rule: no review reason, confidence at least {low_confidence:g}"
        return f"{default} ({refused})" if refused else default
    promise = (f"{100 * rule['target']:.4g}% precision at {100 * rule['confidence_level']:.4g}% confidence, "
               f"fitted on {rule['dataset']}")
    if rule["threshold"] is None:
        return f"accept rule {rule['id']}: accepts nothing, since nothing could be promised ({promise})"
    return f"accept rule {rule['id']}: no other review reason, confidence at least {rule['threshold']:g} ({promise})"


def _accept_indicators(part: pd.DataFrame) -> pd.DataFrame:
    """Per labelled file: its grid bin (the highest threshold it passes; len(GRID): not eligible),
    and indicators to sum."""
    part = part[part["label"].notna()]
    answered = part["predicted"].notna().to_numpy()
    correct = answered & (part["predicted"] == part["label"]).fillna(False).to_numpy(dtype=bool)
    review = _flag(part["needs_review"])
    structural = part["review_reasons"].map(_structural_text).to_numpy(dtype=bool)
    confidence = pd.to_numeric(part["confidence"], errors="coerce").to_numpy(dtype=float)
    eligible = answered & ~structural & ~np.isnan(confidence)
    ascending = GRID[::-1]
    passed = len(GRID) - np.searchsorted(ascending, np.nan_to_num(confidence, nan=-1.0), side="right")
    accepted = answered & ~review
    return pd.DataFrame({
        "bin": np.where(eligible, passed, len(GRID)).astype(np.int64), "files": np.ones(len(part), dtype=np.int64),
        "right": correct.astype(np.int64), "accepted": accepted.astype(np.int64),
        "accepted_right": (accepted & correct).astype(np.int64), "eligible": eligible.astype(np.int64),
        "eligible_right": (eligible & correct).astype(np.int64),
    }, index=part.index)
