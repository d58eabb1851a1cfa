"""The evaluation workflow on a real run of the bundled model in a real ledger: a calibration that
does not help is kept out, a stored one is listed, applied by new runs and removed, and the report
says what was evaluated and which files were missed."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing

import pandas as pd
import pytest

from lid_dask.cluster import connect
from lid_dask.evaluation.calibration import split_by_uri
from lid_dask.evaluation.labels import LabelSet, label_set
from lid_dask.evaluation.report import confusion_shares, distinct_models, write_report
from lid_dask.evaluation.serialize import from_json
from lid_dask.evaluation.workflow import calibrate_run, evaluate_run
from lid_dask.ledger import Ledger
from lid_dask.runs import Run

MODEL = "whisper-ct2"
OTHER = {"en": "de", "de": "en"}


@pytest.fixture(scope="module")
def answered(tmp_path_factory, audio_dir):
    """A SQLite ledger holding run "labelled": the bundled model over 30 clips (the English and
    German sentences under distinct names); and the run's answers by uri."""
    folder = tmp_path_factory.mktemp("answered")
    clips = folder / "clips"
    clips.mkdir()
    for i in range(30):
        shutil.copy(audio_dir / ("en.wav" if i % 2 else "de.wav"), clips / f"clip{i:02d}.wav")
    run = Run.create("labelled", [str(clips)], f"sqlite:///{folder / 'ledger.db'}")
    execute(run)
    results = run.results().set_index("uri")
    assert set(results["language"]) == {"en", "de"}
    return folder / "ledger.db", results


def execute(*runs: Run) -> None:
    client = connect(n_workers=1, dashboard_address=None)
    try:
        for run in runs:
            run.execute(client, progress=False)
    finally:
        client.close()
        client.cluster.close()


@pytest.fixture
def run(answered, tmp_path) -> Run:
    """The answered run in a copy of its ledger (SQLite's backup: the write-ahead log included):
    each test stores calibrations of its own."""
    with closing(sqlite3.connect(answered[0])) as source, closing(sqlite3.connect(tmp_path / "ledger.db")) as copy:
        source.backup(copy)
    return Run("labelled", f"sqlite:///{tmp_path / 'ledger.db'}")


def labels(answers: pd.Series, dataset: str, wrong) -> LabelSet:
    """Labels that agree with the run's answers except on the files where `wrong(position,
    held_out)` holds, labelled with the other language; held_out: the file is among those
    `calibrate_run` checks on for `dataset` (the same split by uri)."""
    frame = pd.DataFrame({"uri": answers.index, "answer": answers.to_numpy()})
    held_out = set(split_by_uri(frame, test_fraction=0.3, salt=f"calibrate:{dataset}")[1]["uri"])
    assert 0 < len(held_out) < len(frame)
    raw = [OTHER[a] if wrong(i, uri in held_out) else a for i, (uri, a) in enumerate(zip(frame["uri"],
                                                                                        frame["answer"]))]
    return label_set(pd.DataFrame({"uri": frame["uri"], "raw_label": raw}), dataset)


def test_a_calibration_worse_than_none_is_kept_out_unless_forced(run, answered):
    # right on every file it is fitted on, wrong on every file it is checked on: the fit raises the
    # confidence, which the held-out files say was already too high
    truth = labels(answered[1]["language"], "worse", lambda i, held_out: held_out)
    calibrated = calibrate_run(run, truth, "worse")
    before, after = calibrated.effect["calibration_ece"].sel(model=MODEL, stage=["raw", "calibrated"]).values
    assert after > before
    assert calibrated.stored == {}
    assert calibrated.kept_out == {MODEL: f"held-out ECE {after:.1%} with it, {before:.1%} without"}
    assert run.ledger.evaluations.calibrations_frame().empty
    later = Run.create("later", [answered[1].index[0]], run.ledger.url)
    assert not later.config["identify"].get("calibrations")  # nothing for new runs to apply

    forced = calibrate_run(run, truth, "worse", force=True)
    assert list(forced.stored) == [MODEL] and MODEL in forced.kept_out  # stored, and still said to be worse
    row = run.ledger.evaluations.calibrations_frame().iloc[0]
    assert row["id"] == forced.stored[MODEL] and row["in_use"]
    assert (row["ece_before"], row["ece_after"]) == pytest.approx((before, after))


def test_a_calibration_that_helps_is_stored_applied_listed_and_removed(run, answered):
    results = answered[1]
    # half the files of each language labelled wrongly: a confidence near 0.95 means about 0.5
    truth = labels(results["language"], "half", lambda i, held_out: i // 2 % 2 == 0)
    calibrated = calibrate_run(run, truth, "half")
    before, after = calibrated.effect["calibration_ece"].sel(model=MODEL, stage=["raw", "calibrated"]).values
    assert after < before and calibrated.kept_out == {}
    store = run.ledger.evaluations
    listed = store.calibrations_frame()
    assert listed[["id", "model", "dataset", "in_use"]].to_dict("records") == [
        {"id": calibrated.stored[MODEL], "model": MODEL, "dataset": "half", "in_use": True}]

    clip = results.index[0]
    applied = Run.create("applied", [clip], run.ledger.url)
    store.remove_calibration(calibrated.stored[MODEL])
    assert store.calibrations_frame().empty
    with pytest.raises(LookupError, match=f"no calibration {calibrated.stored[MODEL]} "):
        store.remove_calibration(calibrated.stored[MODEL])
    plain = Run.create("plain", [clip], run.ledger.url)
    assert applied.config["identify"]["calibrations"][MODEL]["id"] == calibrated.stored[MODEL]
    assert not plain.config["identify"].get("calibrations")
    execute(applied, plain)
    own = results.loc[clip, "confidence"]
    assert plain.results()["confidence"].iloc[0] == pytest.approx(own)  # removed: the model's own confidence
    assert applied.results()["confidence"].iloc[0] < own - 0.2  # stored: calibrated towards one half


def test_report_of_a_real_run(run, answered, tmp_path):
    results = answered[1]
    german = list(results.index[results["language"] == "de"])
    # the German clips labelled French: "de" is an answer that labels no file
    truth = label_set(pd.DataFrame({"uri": results.index, "raw_label": results["language"].replace("de", "fr")}),
                      "fr-for-de")
    evaluation = evaluate_run(run, truth, "fr-for-de")
    stored = from_json(run.ledger.evaluations.evaluation_result(evaluation.id))
    assert stored.attrs["run"] == "labelled" and stored.attrs["models"] == f"{MODEL}:bundled"
    text = write_report(evaluation.dataset, tmp_path / "report", frame=evaluation.frame).read_text()
    for line in ("- run: labelled", f"- models: {MODEL}:bundled", "- labels: fr-for-de", "- run created: 20",
                 "- evaluated: 20", "- labelled files: 30", "shown once"):
        assert line in text
    assert "| consensus |" not in text and f"| {MODEL} |" in text
    assert f"### Misidentified files ({MODEL})" in text
    assert f"{len(german)} files got another language than their label" in text
    for uri in german:
        assert f"| {uri} | fr | de | " in text
    shares = confusion_shares(distinct_models(evaluation.dataset), MODEL)
    assert list(shares.index) == ["en", "fr"] and list(shares.columns) == ["en", "fr", "de"]
    assert shares.loc["fr", "de"] == 1 and shares.loc["en", "en"] == 1


def test_calibrations_are_listed_and_removed_in_either_database(db_url):
    store = Ledger(db_url).evaluations
    params = {"method": "platt", "a": 0.5, "b": 0.0, "n": 10}
    ids = [store.save_calibration(model, None, "platt", params, "set", 0.2, 0.1) for model in ("a", "b", "a")]
    frame = store.calibrations_frame()
    assert frame["id"].tolist() == ids and frame["in_use"].tolist() == [False, True, True]
    assert str(frame["created_at"].dt.tz) == "UTC"
    assert store.calibrations_frame("a")["id"].tolist() == [ids[0], ids[2]]
    assert store.remove_calibration(ids[2])["model"] == "a"
    assert store.latest_calibrations(["a"])["a"]["id"] == ids[0]  # the previous one is in use again
    assert store.calibrations_frame("a")["in_use"].tolist() == [True]
    with pytest.raises(LookupError, match=f"no calibration {ids[2]} "):
        store.remove_calibration(ids[2])
