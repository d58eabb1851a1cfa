"""Evaluation as the CLI and notebooks run it: a run joined to labels, stored in the ledger.

    evaluation = evaluate_run(run, load_ground_truth("labels.csv", run.ledger), dataset="synthetic")
    evaluation.comparison.exit_code()      # regression against the previous evaluation of that dataset
    write_report(evaluation.dataset, "report/", previous=evaluation.comparison, frame=evaluation.frame)
    calibrate_run(run, labels, dataset)    # fitted, checked on held-out files, stored per model if it helps
    fit_accept_run(run, labels, 0.97)      # the accept rule (lid_dask.evaluation.acceptance); store_accept_rule
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import fsspec
import pandas as pd
import xarray as xr

from lid_dask.acceptance import in_force
from lid_dask.config import IdentifyConfig
from lid_dask.evaluation.acceptance import acceptance_effect, describe
from lid_dask.evaluation.calibration import (applied_calibrations, calibration_effect, fit_per_model, from_dict,
                                            split_by_uri, undo_calibrations)
from lid_dask.evaluation.frames import evaluation_frame
from lid_dask.evaluation.labels import LabelSet, detect_kind, label_set, load_labels
from lid_dask.evaluation.metrics import CONSENSUS, evaluate
from lid_dask.evaluation.regression import Comparison, compare, paired_counts
from lid_dask.evaluation.serialize import from_json, to_json
from lid_dask.ledger import Ledger, RunInfo
from lid_dask.ledger.database import utcnow
from lid_dask.runs import Run

DB_LABELS = "db:"  # prefix of reviewed ground truth stored in the ledger, e.g. db:reviewed


@dataclass
class Evaluation:
    id: int
    dataset: xr.Dataset
    comparison: Comparison | None
    frame: object  # the evaluation frame (Dask): per-file rows, for the report's list of misidentified files


@dataclass
class Calibrated:
    """What `calibrate_run` fitted, how it did on held-out files, and what it stored."""

    effect: xr.Dataset  # calibration_* variables: ECE and reliability before/after, per fitted model
    stored: dict[str, int]  # model -> id of its stored calibration
    kept_out: dict[str, str]  # model -> why its calibration was not stored


def load_ground_truth(source: str, ledger: Ledger, kind: str = "auto", split: str = "test",
                      storage_options: dict | None = None) -> LabelSet:
    """Labels from a file or folder (see `load_labels`), or ``db:NAME`` for reviewed labels.

    `split` applies to the layouts that have splits (Common Voice, FLEURS).
    """
    if source.startswith(DB_LABELS):
        frame = ledger.evaluations.labels_frame(source.removeprefix(DB_LABELS)).assign(raw_label=lambda f: f["language"])
        return label_set(frame, source)
    kind = detect_kind(source, storage_options) if kind == "auto" else kind
    options = {"split": split} if kind in ("commonvoice", "fleurs") else {}
    return load_labels(source, kind=kind, storage_options=storage_options, **options)


def evaluation_of(run: Run, labels: LabelSet) -> tuple[xr.Dataset, object]:
    """The metrics Dataset of a run against labels, and the evaluation frame it came from."""
    frame = evaluation_frame(run.to_dask(), labels, run.predictions())
    return evaluate(frame), frame


def evaluate_run(run: Run, labels: LabelSet, dataset: str, threshold: float = 0.02) -> Evaluation:
    """Evaluate, compare with the previous evaluation of `dataset`, and store it in the ledger.

    The Dataset's attrs say what was evaluated (run, model specs, review rule, dates), so a stored
    evaluation still says it when its report is written later. Its ``accept_*`` variables are what
    the review rule in force did (`acceptance_effect`).
    """
    ds, frame = evaluation_of(run, labels)
    ds = ds.merge(acceptance_effect(frame))
    ledger = run.ledger
    info = ledger.get_run(run.name)  # fresh: the fingerprint is written when the run executes
    ds.attrs.update(_about(info, dataset))
    models = [str(m) for m in ds["model"].values]
    summary = {m: {k: _number(ds[k].sel(model=m)) for k in ("n", "accuracy", "macro_f1", "ece", "coverage")}
               for m in models}
    evaluation_id = ledger.evaluations.save_evaluation(dataset, info.id, models, info.fingerprint, summary, to_json(ds))
    previous_id = ledger.evaluations.previous_evaluation(dataset, evaluation_id)
    comparison = None
    if previous_id is not None:
        previous = from_json(ledger.evaluations.evaluation_result(previous_id))
        previous_run = _run_of_evaluation(ledger, previous_id)
        paired = None
        if previous_run is not None:
            paired = paired_counts(frame, evaluation_frame(previous_run.to_dask(), labels, previous_run.predictions()))
        comparison = compare(ds, previous, paired, threshold=threshold)
    return Evaluation(evaluation_id, ds, comparison, frame)


def calibrate_run(run: Run, labels: LabelSet, dataset: str, test_fraction: float = 0.3,
                  force: bool = False) -> Calibrated:
    """Fit a calibration per model on part of the labelled files; measure it on the rest; store
    the ones that lower the expected calibration error there.

    A calibration that does not beat none on the held-out files (or has none to be checked on)
    is not stored unless `force`: stored, new runs would apply it without anyone noticing, and
    a rejected fit is not worth keeping (refitting gives it back). Only what helps is in the
    ledger, so `calibrations_frame` lists what new runs apply. The split is by a hash of the
    file URI, so the held-out files never influence the fit. When the run's answers already went
    through a calibration, it is undone first: the new one replaces it, on the model's own
    confidence.
    """
    frame = evaluation_frame(run.to_dask(), labels, run.predictions())
    info = run.ledger.get_run(run.name)
    applied = {model: from_dict(entry["params"]) for model, entry in applied_calibrations(info).items()}
    frame = undo_calibrations(frame, applied)
    fit_part, held_out = split_by_uri(frame, test_fraction=test_fraction, salt=f"calibrate:{dataset}")
    fitted = {model: cal for model, cal in fit_per_model(fit_part).items() if model != CONSENSUS}
    effect = calibration_effect(held_out[held_out["model"].isin(list(fitted))], fitted).reindex(model=list(fitted))
    shas = {m.get("name"): m.get("model_sha256") for m in (info.fingerprint or {}).get("models", [])}
    stored, kept_out = {}, {}
    for model, calibration in fitted.items():
        before, after = (_number(effect["calibration_ece"].sel(model=model, stage=s)) for s in ("raw", "calibrated"))
        if after is None:
            kept_out[model] = "no held-out file to check it on"
        elif after >= before:
            kept_out[model] = f"held-out ECE {after:.1%} with it, {before:.1%} without"
        if model in kept_out and not force:
            continue
        params = calibration.to_dict()
        stored[model] = run.ledger.evaluations.save_calibration(model, shas.get(model), params["method"], params,
                                                                dataset, before, after)
    return Calibrated(effect, stored, kept_out)


def export_review(run: Run, path: str, storage_options: dict | None = None) -> int:
    """Write the files that need review (CSV), with a link to listen to each and an empty
    ``reviewed_language`` column for the reviewer; returns the number of files."""
    frame = run.results()
    queue = frame[frame["needs_review"].fillna(False).astype(bool)].copy()
    queue["listen"] = queue["uri"].map(lambda uri: _listen_link(uri, storage_options))
    queue["reviewed_language"] = ""
    queue["reviewer"] = ""
    columns = ["uri", "listen", "language", "confidence", "agreement", "review_reasons", "reviewed_language",
               "reviewer"]
    with fsspec.open(path, "w", **(storage_options or {})) as handle:
        queue[columns].to_csv(handle, index=False)
    return len(queue)


def import_review(ledger: Ledger, path: str, dataset: str, storage_options: dict | None = None) -> int:
    """Store the reviewed languages of a filled-in review file as ground truth ``db:<dataset>``."""
    from lid_dask.languages import to_code

    with fsspec.open(path, "r", **(storage_options or {})) as handle:
        frame = pd.read_csv(handle, dtype=str).fillna("")
    reviewed = frame[frame["reviewed_language"].str.strip() != ""]
    rows = [{"uri": r.uri, "language": to_code(r.reviewed_language), "reviewer": r.reviewer or None}
            for r in reviewed.itertuples()]
    return ledger.evaluations.save_labels(dataset, rows, source="review")


def _listen_link(uri: str, storage_options: dict | None) -> str:
    """A URL a person can open: signed for a week by filesystems that sign (fsspec's `sign`: S3,
    GCS, Azure), file:// for local paths, else the URI itself (file://, HTTP)."""
    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    if "://" not in uri:
        return f"file://{path}"
    try:
        return fs.sign(path, expiration=7 * 24 * 3600)
    except NotImplementedError:
        return uri


def _about(info: RunInfo, dataset: str) -> dict:
    """The run, its model specs, the calibrations and the review rule its answers went through, and
    the dates."""
    models = [m.get("spec") or m["name"] for m in (info.fingerprint or {}).get("models", [])]
    about = {"run": info.name, "models": ", ".join(models or info.config.get("identify", {}).get("models", [])),
             "dataset": dataset}
    calibrations = applied_calibrations(info)
    if calibrations:
        about["calibrations"] = ", ".join(f"{m}: calibration {e.get('id')}" for m, e in sorted(calibrations.items()))
    rule, refused = in_force(info.config, info.fingerprint)
    about["accept_rule"] = describe(rule, IdentifyConfig.from_dict(info.config.get("identify", {})).consensus
                                    .low_confidence, refused)
    if rule is not None and rule["threshold"] is not None:
        about["accept_target"] = rule["target"]
    if info.created_at is not None:
        about["run_created"] = f"{info.created_at.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    about["evaluated"] = f"{utcnow():%Y-%m-%d %H:%M} UTC"
    return about


def _run_of_evaluation(ledger: Ledger, evaluation_id: int) -> Run | None:
    frame = ledger.evaluations.evaluations_frame()
    row = frame[frame["id"] == evaluation_id]
    if row.empty or pd.isna(row.iloc[0]["run_id"]):
        return None
    names = {info.id: info.name for info in ledger.list_runs()}
    name = names.get(int(row.iloc[0]["run_id"]))
    return Run(name, ledger=ledger) if name else None


def _number(value) -> float | None:
    number = float(value)
    return None if number != number else number
