"""The report writes Markdown, HTML and valid PNGs."""

from __future__ import annotations

import matplotlib
from PIL import Image

from lid_dask.evaluation import calibration
from lid_dask.evaluation.metrics import evaluate
from lid_dask.evaluation.report import write_report

from .conftest import random_frame

PLOTS = ["accuracy_by_language.png", "confusion.png", "reliability.png", "coverage.png", "agreement.png"]


def test_report_with_calibration_and_previous(tmp_path, frame, dataset):
    backend = matplotlib.get_backend()
    fit_part, held_out = calibration.split_by_uri(frame)
    full = dataset.merge(calibration.calibration_effect(held_out, calibration.fit_per_model(fit_part)),
                         compat="no_conflicts", join="outer")
    previous = evaluate(random_frame(1, accuracy=0.8))
    markdown = write_report(full, tmp_path / "report", previous=previous)

    text = markdown.read_text()
    for heading in ("## Summary", "### Long tail", "### Top confusions", "### Expected calibration error",
                    "## Consensus and review", "## Change since the previous evaluation"):
        assert heading in text
    html = (tmp_path / "report" / "report.html").read_text()
    for name in PLOTS:
        assert f"]({name})" in text and f'src="{name}"' in html
        with Image.open(tmp_path / "report" / name) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 200
    assert "REGRESSION" in text  # accuracy 0.8 -> 0.7 on every language
    assert matplotlib.get_backend() == backend  # no global backend switch


def test_report_for_one_model_without_consensus_columns(tmp_path):
    frame = random_frame(2, n=500, models=("whisper",)).drop(columns=["agreement", "needs_review"])
    markdown = write_report(evaluate(frame), tmp_path)
    assert "## Consensus and review" not in markdown.read_text()
    assert not (tmp_path / "agreement.png").exists()
    for name in PLOTS[:4]:
        with Image.open(tmp_path / name) as image:
            image.verify()


def test_markdown_tables_escape_pipes_in_cells():
    """A cell may hold a model spec or a language name with ``|``: escaped, the row keeps its columns
    (tabulate's pipe format, behind DataFrame.to_markdown, does not escape it)."""
    import pandas as pd

    from lid_dask.evaluation.report import _markdown

    table = pd.DataFrame({"model": ["whisper-ct2:/m|x", "consensus"], "n": [12, 3], "accuracy": ["90.0%", ""]})
    assert _markdown([("h2", "Summary"), ("table", table)]).splitlines() == [
        "## Summary", "", "| model | n | accuracy |", "|---|---|---|",
        "| whisper-ct2:/m\\|x | 12 | 90.0% |", "| consensus | 3 |  |"]
