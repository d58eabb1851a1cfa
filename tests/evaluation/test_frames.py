"""The evaluation frame: a run's results and predictions joined to labels."""

from __future__ import annotations

import dask.dataframe as dd
import pandas as pd
import pytest

from lid_dask.evaluation.frames import evaluation_frame
from lid_dask.evaluation.labels import LabelSet
from lid_dask.evaluation.metrics import evaluate
from lid_dask.ledger import Ledger, Outcome
from lid_dask.results import FileResult, ModelVerdict
from lid_dask.runs import Run


def test_evaluation_frame_from_run_tables(tmp_path):
    """Run.results() / Run.predictions() shapes joined to labels: every model gets every labelled file."""
    uris = [str(tmp_path / f"{i}.wav") for i in range(5)]
    results = pd.DataFrame({"uri": uris, "language": ["en", "de", None, "pt-BR", None],
                            "confidence": [0.9, 0.6, None, 0.7, None],
                            "agreement": ["unanimous", "split", None, "single", None],
                            "needs_review": [False, True, False, False, False],
                            "state": ["done", "done", "dead", "done", "pending"]})
    predictions = pd.DataFrame({"uri": [uris[0], uris[0], uris[1], uris[1], uris[3]],
                                "model": ["w", "s", "w", "s", "w"], "language": ["en", "en", "de", "fr", "pt"],
                                "probability": [0.9, 0.8, 0.7, 0.5, 0.7]})
    labels = LabelSet(pd.DataFrame({"uri": [*uris, str(tmp_path / "not-in-run.wav")],
                                    "language": ["en", "de", "fr", "pt", "es", "it"], "raw_label": ""}))
    frame = evaluation_frame(dd.from_pandas(results, npartitions=2), labels, predictions).compute()
    assert sorted(frame["model"].unique()) == ["consensus", "s", "w"]
    assert frame.groupby("model").size().to_dict() == {"consensus": 4, "s": 4, "w": 4}  # pending: not yet
    failed = frame[frame["uri"] == uris[2]]
    assert failed["predicted"].isna().all() and set(failed["label"]) == {"fr"}
    ds = evaluate(frame)
    assert float(ds["accuracy"].sel(model="consensus")) == pytest.approx(3 / 4)  # pt-BR counts as pt
    assert float(ds["accuracy"].sel(model="w")) == pytest.approx(3 / 4)
    assert float(ds["accuracy"].sel(model="s")) == pytest.approx(1 / 4)
    assert float(ds["coverage"].sel(model="consensus")) == pytest.approx(3 / 4)


@pytest.mark.parametrize("read", [
    "results",
    "to_dask",
])
def test_from_a_real_ledger(tmp_path, read):
    """Run.results()/to_dask() and Run.predictions() from a SQLite ledger, as the CLI will call them."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    info = ledger.create_run("eval", {})
    uris = [str(tmp_path / f"{i}.wav") for i in range(4)]
    ledger.register(info.id, uris)
    claims = {c.uri: c for c in ledger.claim(info.id, "me", 10, 60)}

    def answer(uri, language, other):
        verdicts = (ModelVerdict("whisper", language, 0.9, {language: 0.9}),
                    ModelVerdict("sb", other, 0.6, {other: 0.6}))
        agreement = "unanimous" if language == other else "split"
        return Outcome(claims[uri].file_id, FileResult(uri=uri, language=language, confidence=0.8, agreement=agreement,
                                                       needs_review=agreement == "split", models=verdicts))

    ledger.record([answer(uris[0], "en", "en"), answer(uris[1], "de", "nl"), answer(uris[2], "fr", "fr"),
                   Outcome(claims[uris[3]].file_id, FileResult(uri=uris[3], error_kind="corrupt", error="bad"))],
                  "me", max_attempts=1, backoff=0)
    run = Run("eval", ledger=ledger)
    labels = LabelSet(pd.DataFrame({"uri": uris, "language": ["en", "de", "it", "es"], "raw_label": ""}))
    ds = evaluate(evaluation_frame(getattr(run, read)(), labels, run.predictions()))
    assert list(ds["model"].values) == ["consensus", "sb", "whisper"]
    assert ds["accuracy"].to_series().to_dict() == {"consensus": 0.5, "sb": 0.25, "whisper": 0.5}
    assert float(ds["coverage"].sel(model="consensus")) == 0.75  # the dead file counts as no answer
    assert int(ds["agreement_count"].sel(model="consensus", agreement="split")) == 1
    ledger.engine.dispose()
