"""Evaluation against ground truth, as Dask dataframes.

    labels = load_labels("cv-corpus-17.0/", split="test")         # labels: ground-truth loaders
    frame = evaluation_frame(run.results(), labels, run.predictions())   # frames: the join
    ds = evaluate(frame)                                           # metrics: xarray Dataset
    fit_part, held_out = split_by_uri(frame)                       # calibration
    ds = ds.merge(calibration_effect(held_out, fit_per_model(fit_part)), compat="no_conflicts", join="outer")
    compare(ds, previous_ds).exit_code()                           # regression
    write_report(ds, "report/", previous=previous_ds, frame=frame) # report
    to_json(ds) / from_json(text)                                  # serialize: one database row
"""

from lid_dask.evaluation.calibration import (PlattScaling, TemperatureScaling, apply_calibrations, calibration_effect,
                                            fit_per_model, fit_platt, fit_temperature, split_by_uri)
from lid_dask.evaluation.frames import evaluation_frame
from lid_dask.evaluation.labels import (LabelSet, load_common_voice, load_fleurs, load_labels, load_table,
                                        load_voxlingua)
from lid_dask.evaluation.metrics import (evaluate, expected_calibration_error, misidentified_files, per_language_table,
                                         summary_table, top_confusions)
from lid_dask.evaluation.regression import Comparison, compare, paired_counts
from lid_dask.evaluation.report import write_report
from lid_dask.evaluation.serialize import from_json, to_json

__all__ = [
    "Comparison", "LabelSet", "PlattScaling", "TemperatureScaling", "apply_calibrations", "calibration_effect",
    "compare", "evaluate", "evaluation_frame", "expected_calibration_error", "fit_per_model", "fit_platt",
    "fit_temperature", "from_json", "load_common_voice", "load_fleurs", "load_labels", "load_table",
    "load_voxlingua", "misidentified_files", "paired_counts", "per_language_table", "split_by_uri", "summary_table", "to_json",
    "top_confusions", "write_report",
]
