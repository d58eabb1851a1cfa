"""The report writes Markdown, HTML and valid PNGs, and says what a reader needs once."""

from __future__ import annotations

import matplotlib
import pandas as pd
import pytest
from PIL import Image

from lid_dask.evaluation import calibration
from lid_dask.evaluation.metrics import evaluate
from lid_dask.evaluation.report import confusion_shares, write_report

from .conftest import random_frame

PLOTS = ["accuracy_by_language.png", "confusion.png", "reliability.png", "coverage.png", "agreement.png"]


@pytest.fixture(scope="module")
def two_models() -> pd.DataFrame:
    return random_frame(0, models=("a", "b", "consensus"))


def test_report_with_calibration_and_previous(tmp_path, two_models):
    backend = matplotlib.get_backend()
    fit_part, held_out = calibration.split_by_uri(two_models)
    effect = calibration.calibration_effect(held_out, calibration.fit_per_model(fit_part))
    assert effect.sizes["calibration_bin"] == 15  # about 900 held-out files
    full = evaluate(two_models).merge(effect, compat="no_conflicts", join="outer")
    previous = evaluate(random_frame(1, models=("a", "b", "consensus"), accuracy=0.8))
    markdown = write_report(full, tmp_path / "report", previous=previous, frame=two_models)

    text = markdown.read_text()
    for heading in ("## Summary", "### Long tail", "### Top confusions", "### Misidentified files (consensus)",
                    "### Expected calibration error", "## Consensus and review",
                    "## Change since the previous evaluation"):
        assert heading in text
    html = (tmp_path / "report" / "report.html").read_text()
    for name in PLOTS:
        assert f"]({name})" in text and f'src="{name}"' in html
        with Image.open(tmp_path / "report" / name) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 200
    assert "REGRESSION" in text  # accuracy 0.8 -> 0.7 on every language
    assert "| consensus |" in text and "| a |" in text and "| b |" in text  # three models: all shown
    assert matplotlib.get_backend() == backend  # no global backend switch


def test_one_model_is_shown_once(tmp_path):
    """A run of one model has rows for the model and for the consensus, which is the same answer:
    every table and plot would show it twice."""
    frame = random_frame(2, n=600, models=("whisper",))
    frame = pd.concat([frame, frame.assign(model="consensus")], ignore_index=True)
    dataset = evaluate(frame)
    previous = evaluate(random_frame(3, n=600, models=("whisper",)).pipe(
        lambda f: pd.concat([f, f.assign(model="consensus")], ignore_index=True)))
    text = write_report(dataset, tmp_path / "one", previous=previous, frame=frame).read_text()
    assert "one model: its answers are the final answers (consensus), shown once" in text
    assert "| whisper |" in text and "| consensus |" not in text  # summary and comparison: one row each
    assert "whisper accuracy" in text and "consensus accuracy" not in text  # long tail: one set of columns
    assert "## Consensus and review" not in text and not (tmp_path / "one" / "agreement.png").exists()
    assert "### Misidentified files (whisper)" in text
    alone = write_report(evaluate(random_frame(2, n=600, models=("whisper",))), tmp_path / "alone")
    with Image.open(tmp_path / "one" / "reliability.png") as one, Image.open(alone.parent / "reliability.png") as two:
        assert one.size == two.size  # one panel, as for a frame without consensus rows


def test_report_for_one_model_without_consensus_columns(tmp_path):
    frame = random_frame(2, n=500, models=("whisper",)).drop(columns=["agreement", "needs_review"])
    markdown = write_report(evaluate(frame), tmp_path)
    assert "## Consensus and review" not in markdown.read_text()
    assert not (tmp_path / "agreement.png").exists()
    for name in PLOTS[:4]:
        with Image.open(tmp_path / name) as image:
            image.verify()


@pytest.mark.parametrize(("files", "bins"), [(60, 5), (3000, 15)])
def test_reliability_plot_bins_follow_the_number_of_files(tmp_path, files, bins):
    text = write_report(evaluate(random_frame(4, n=files, models=("m",))), tmp_path).read_text()
    assert f"in {bins} bins for these {files} files" in text


def test_confusion_shows_the_wrong_answers_given_even_unlabelled_languages():
    """"xx" is answered but no file is labelled xx: a column of its own, not lumped into "other"."""
    frame = random_frame(5, n=2000, models=("m",))
    shares = confusion_shares(evaluate(frame), "m")
    assert "xx" in shares.columns and "xx" not in shares.index
    wrong_xx = frame[frame["predicted"] == "xx"].groupby("label").size() / frame.groupby("label").size()
    pd.testing.assert_series_equal(shares["xx"], wrong_xx.reindex(shares.index).fillna(0), check_names=False)
    assert shares.sum(axis=1).round(9).eq(1).all()  # every file of a row is in some column
    assert list(shares.columns[:len(shares.index)]) == list(shares.index)  # the diagonal first


def test_misidentified_files_most_confident_first_and_capped(tmp_path, two_models):
    text = write_report(evaluate(two_models), tmp_path, frame=two_models).read_text()
    consensus = two_models[two_models["model"] == "consensus"]
    wrong = consensus[consensus["predicted"] != consensus["label"]]  # None != label: no answer is wrong
    listed = text.split("### Misidentified files (consensus)")[1].split("##")[0]
    assert f"{len(wrong)} files got another language than their label, or none" in listed
    assert f"{len(wrong) - 50} more are not listed" in listed
    rows = [line.split(" | ") for line in listed.splitlines() if line.startswith("| /data/")]
    assert len(rows) == 50
    top = wrong.sort_values("confidence", ascending=False).head(50)
    assert [r[0].removeprefix("| ") for r in rows] == list(top["uri"])
    assert [float(r[3].removesuffix(" |")) for r in rows] == [round(c, 2) for c in top["confidence"]]


def test_long_tail_groups_are_named_in_the_report(tmp_path, frame, dataset):
    text = write_report(dataset, tmp_path).read_text()
    assert "### Long tail: accuracy by labelled files per language" in text
    for group in dataset["group"].values:
        assert f"| {group} |" in text


def test_markdown_tables_escape_pipes_in_cells():
    """A cell may hold a model spec or a language name with ``|``: escaped, the row keeps its columns
    (tabulate's pipe format, behind DataFrame.to_markdown, does not escape it)."""
    import pandas as pd

    from lid_dask.evaluation.report import _markdown

    table = pd.DataFrame({"model": ["whisper-ct2:/m|x", "consensus"], "n": [12, 3], "accuracy": ["90.0%", ""]})
    assert _markdown([("h2", "Summary"), ("table", table)]).splitlines() == [
        "## Summary", "", "| model | n | accuracy |", "|---|---|---|",
        "| whisper-ct2:/m\\|x | 12 | 90.0% |", "| consensus | 3 |  |"]
