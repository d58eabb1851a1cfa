"""The evaluation frame: a run's answers joined to ground truth, one row per file and model.

    frame = evaluation_frame(run.to_dask(), labels, run.predictions())
    ds = evaluate(frame)

Rows: ``uri, model, predicted, confidence, label, agreement, needs_review`` (and
``review_reasons`` when the results have them, as a run's do). The final answer
is model ``consensus``; every model gets a row for every labelled file of the run, with a null
prediction where it gave none (a failed file, no speech), so a model that fails more often
cannot look better by answering only the easy files. ``agreement``, ``needs_review`` and
``review_reasons`` are properties of the file (from the consensus), repeated on each model's row.
"""

from __future__ import annotations

from collections.abc import Sequence

import dask.dataframe as dd
import pandas as pd

from lid_dask.evaluation.labels import LabelSet, canonical_uri, normalise_label
from lid_dask.evaluation.metrics import CONSENSUS, as_dask
from lid_dask.ledger.schema import DEAD, DONE

FILE_COLUMNS = ["uri", "language", "confidence", "agreement", "needs_review"]
FINAL_STATES = [DONE, DEAD]


def evaluation_frame(results, labels: LabelSet | pd.DataFrame, predictions=None,
                     models: Sequence[str] | None = None) -> dd.DataFrame:
    """Join a run's results (`Run.results()` or `Run.to_dask()`) and per-model predictions
    (`Run.predictions()`: uri, model, language, probability) to labels [uri, language].

    Only files that are both in the run and labelled are kept, and, when `results` has the
    ledger's ``state``, only those in a final state (done, or dead: failed for good, which
    counts as no answer). `models` defaults to every
    model that has predictions. Predicted labels are normalised like the ground truth.
    """
    label_frame = labels.frame if isinstance(labels, LabelSet) else labels
    truth = label_frame[["uri", "language"]].rename(columns={"language": "label"})
    results = as_dask(results)
    if "state" in results.columns:  # files still pending or waiting for a retry have no final answer yet
        results = results[results["state"].isin(FINAL_STATES)]
    reasons = [c for c in ("review_reasons",) if c in results.columns]
    files = _canonical(results[FILE_COLUMNS + reasons]).merge(truth, on="uri", how="inner")
    parts = [files.rename(columns={"language": "predicted"}).assign(model=CONSENSUS)]
    if predictions is not None:
        predictions = _canonical(as_dask(predictions)[["uri", "model", "language", "probability"]])
        if models is None:
            models = sorted(predictions["model"].unique().compute())
        context = files[["uri", "label", "agreement", "needs_review", *reasons]]
        for model in models:
            own = predictions[predictions["model"] == model][["uri", "language", "probability"]]
            own = own.rename(columns={"language": "predicted", "probability": "confidence"})
            parts.append(context.merge(own, on="uri", how="left").assign(model=model))
    columns = ["uri", "model", "predicted", "confidence", "label", "agreement", "needs_review", *reasons]
    frame = dd.concat([part[columns] for part in parts])
    return frame.map_partitions(_normalise_predicted, meta=frame._meta)


def _canonical(frame: dd.DataFrame) -> dd.DataFrame:
    return frame.assign(uri=frame["uri"].map(canonical_uri, meta=("uri", "string")))


def _normalise_predicted(part: pd.DataFrame) -> pd.DataFrame:
    """Models' labels as base languages (a model may say ``pt-BR`` or ``zh-Hant``); unmappable
    labels stay as they are and simply count as wrong."""
    values = part["predicted"].dropna().unique()
    mapping = {value: normalise_label(str(value)) or value for value in values}
    return part.assign(predicted=part["predicted"].map(mapping))
