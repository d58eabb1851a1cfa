"""Accept rules on real runs of the bundled model over the committed samples: fitted on the
labelled files, stored in the ledger, applied by new runs of the same weights and refused by runs
of others; fitted on the confidence new runs give when a calibration changes it; reported by
evaluate. And the store on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lid_dask
from lid_dask.acceptance import choose, rule_settings
from lid_dask.calibration import PlattScaling
from lid_dask.config import IdentifyConfig
from lid_dask.consensus import ModelOutput, calibrate, combine_models
from lid_dask.engine import Identifier
from lid_dask.evaluation.acceptance import fit_accept_run, labelled_answers, store_accept_rule
from lid_dask.evaluation.labels import LabelSet, label_set
from lid_dask.evaluation.report import write_report
from lid_dask.evaluation.selective import AcceptRule, fit_accept_rule
from lid_dask.evaluation.serialize import from_json
from lid_dask.evaluation.workflow import evaluate_run
from lid_dask.ledger import Ledger, Outcome
from lid_dask.results import FileResult, ModelVerdict
from lid_dask.runs import Run
from tests.evaluation.test_workflow import execute

SAMPLES = Path(lid_dask.__file__).parent / "samples"
MODEL = "whisper-ct2"
# On the samples' true labels the bundled model's most confident answers are right and some below
# them wrong: at 80% precision and 50% confidence (4 files without an error suffice) the rule
# accepts about half the files.
TARGET, LEVEL = 0.8, 0.5


@pytest.fixture(scope="module")
def answered(tmp_path_factory):
    """A SQLite ledger holding run "labelled" (the bundled model over the samples), the run's
    answers by uri, and the samples' true labels."""
    folder = tmp_path_factory.mktemp("accept")
    manifest = pd.read_csv(SAMPLES / "manifest.csv")
    uris = [str(SAMPLES / uri) for uri in manifest["uri"]]
    run = Run.create("labelled", uris, f"sqlite:///{folder / 'ledger.db'}")
    execute(run)
    truth = label_set(pd.DataFrame({"uri": uris, "raw_label": manifest["language"]}), "samples")
    return folder / "ledger.db", run.results().set_index("uri"), truth


@pytest.fixture
def run(answered, tmp_path) -> Run:
    """The labelled run in a copy of its ledger: each test stores rules of its own."""
    with closing(sqlite3.connect(answered[0])) as source, closing(sqlite3.connect(tmp_path / "ledger.db")) as copy:
        source.backup(copy)
    return Run("labelled", f"sqlite:///{tmp_path / 'ledger.db'}")


def reasons(row) -> set[str]:
    return set(filter(None, (row.review_reasons or "").split(",")))


def sides(results: pd.DataFrame, threshold: float) -> tuple[list[str], list[str]]:
    """Two files well above the threshold, and two well below it that the default rule accepts
    (confidence over 0.5, no review reason): the files where the two rules differ."""
    by_confidence = results.sort_values("confidence", ascending=False)
    below = by_confidence[(by_confidence["confidence"] < threshold - 0.05) & (by_confidence["confidence"] > 0.55)
                          & ~by_confidence["needs_review"].astype(bool)]
    assert len(below) >= 2
    return list(by_confidence.index[:2]), list(below.index[:2])


def test_a_fitted_rule_round_trips_through_the_ledger_and_new_runs_apply_it(run, answered, tmp_path):
    results, truth = answered[1], answered[2]
    fitted = fit_accept_run(run, truth, TARGET, LEVEL)
    rule, files = fitted.rule, fitted.files.set_index("uri")
    assert files["eligible"].all() and len(files) == len(results)  # one model, no speechless sample
    assert files["confidence"].to_dict() == results.loc[files.index, "confidence"].to_dict()  # no calibration
    assert rule.threshold is not None and 4 <= rule.accepted < len(files)
    assert rule.accepted == fitted.performance["accepted"] == (files["confidence"] >= rule.threshold).sum()
    at_rule = fitted.curve[fitted.curve["threshold"] == rule.threshold].iloc[0]
    assert at_rule["accepted"] == rule.accepted and at_rule["coverage"] == pytest.approx(rule.accepted / len(files))

    rule_id = store_accept_rule(run, fitted, "samples")
    (stored,) = run.ledger.evaluations.accept_rules([MODEL])
    sha = run.ledger.get_run("labelled").fingerprint["models"][0]["model_sha256"]
    assert len(sha) == 64 and stored["models"] == [{"name": MODEL, "model_sha256": sha}]
    assert AcceptRule.from_dict(stored["params"]) == rule and stored["calibrations"] == {MODEL: None}
    assert (stored["id"], stored["dataset"], stored["labels_sha256"]) == (rule_id, "samples", fitted.labels_sha256)
    assert stored["settings"] == rule_settings(IdentifyConfig())

    above, below = sides(results, rule.threshold)
    applied = Run.create("applied", above + below, run.ledger.url)
    plain = Run.create("plain", above + below, run.ledger.url, calibrated=False)
    assert applied.config["identify"]["accept_rule"] == {
        "id": rule_id, "threshold": rule.threshold, "target": TARGET, "confidence_level": LEVEL,
        "dataset": "samples", "models": {MODEL: sha}}
    assert plain.config["identify"]["accept_rule"] is None
    execute(applied, plain)
    with_rule, without = applied.results().set_index("uri"), plain.results().set_index("uri")
    for uri, row in with_rule.iterrows():
        assert ("below_accept_threshold" in reasons(row)) == (row.confidence < rule.threshold)
        assert "low_confidence" not in reasons(row) and row.needs_review == bool(reasons(row))
    assert list(with_rule.index[~with_rule["needs_review"].astype(bool)]) == above
    assert not without.loc[below, "needs_review"].any()  # the default rule accepts what the rule sends to review
    summary = applied.summary()
    assert summary.accept_rule["id"] == rule_id and summary.rule_refused is None
    assert (summary.accepted, summary.finished) == (2, 4)
    assert plain.summary().accept_rule is None

    evaluation = evaluate_run(applied, truth, "samples")
    ds = from_json(run.ledger.evaluations.evaluation_result(evaluation.id))
    assert (float(ds["accept_files"]), float(ds["accept_accepted"]), float(ds["accept_review_queue"])) == (4, 2, 2)
    assert float(ds["accept_precision"]) == truth.frame.set_index("uri").loc[above, "language"].eq(
        with_rule.loc[above, "language"]).mean()
    assert int(ds["risk_coverage_accepted"].sel(accept_threshold=rule.threshold)) == 2
    assert ds.attrs["accept_rule"] == (f"accept rule {rule_id}: no other review reason, confidence at least "
                                       f"{rule.threshold:g} (80% precision at 50% confidence, fitted on samples)")
    text = write_report(ds, tmp_path / "report").read_text()
    assert "## Accepted without review" in text and f"- review rule: accept rule {rule_id}: " in text
    assert (tmp_path / "report" / "risk_coverage.png").stat().st_size > 10_000


def test_a_rule_fitted_on_other_weights_is_refused(run, answered, caplog):
    results, truth = answered[1], answered[2]
    fitted = fit_accept_run(run, truth, TARGET, LEVEL)
    other = dataclasses.replace(fitted, models=[{"name": MODEL, "model_sha256": "0" * 64}])
    rule_id = store_accept_rule(run, other, "samples")
    _, below = sides(results, fitted.rule.threshold)
    refused = Run.create("refused", below, run.ledger.url)
    assert refused.config["identify"]["accept_rule"]["id"] == rule_id  # the weights are known when it runs
    execute(refused)
    answers = refused.results()
    assert not answers["needs_review"].any()  # the default rule: both are over 0.5
    sha = refused.ledger.get_run("refused").fingerprint["models"][0]["model_sha256"]
    why = f"accept rule {rule_id} was fitted on other weights of {MODEL} (000000000000, loaded {sha[:12]})"
    summary = refused.summary()
    assert summary.accept_rule is None and summary.rule_refused == why
    with caplog.at_level(logging.WARNING, logger="lid_dask.engine"):
        identifier = Identifier(models=["whisper-ct2:bundled"], accept_rule=refused.config["identify"]["accept_rule"])
    assert identifier.accept_rule is None
    assert f"{why}; not applied: answers under 0.5 confidence go to review" in caplog.text


def test_the_rule_is_fitted_on_the_confidence_new_runs_give(run, answered, caplog):
    """A calibration stored before the rule is fitted (as `lid-dask calibrate` does in one command)
    changes the confidence of new runs: the rule is fitted on that, and holds only under it."""
    results, truth = answered[1], answered[2]
    store = run.ledger.evaluations
    sha = run.ledger.get_run("labelled").fingerprint["models"][0]["model_sha256"]
    platt = PlattScaling(0.5, -0.2, 10)
    calibration = store.save_calibration(MODEL, sha, "platt", platt.to_dict(), "made-up", None, None)
    fitted = fit_accept_run(run, truth, TARGET, LEVEL)
    assert fitted.calibrations == {MODEL: calibration}
    files = fitted.files.set_index("uri")
    own = results.loc[files.index, "confidence"].to_numpy()
    assert files["confidence"].to_numpy() == pytest.approx(platt.apply(own), abs=1e-12)  # one model: exact
    uncalibrated = fit_accept_rule(own, files["correct"], TARGET, LEVEL)
    assert platt.apply(uncalibrated.threshold) < 0.8 and fitted.rule.threshold < 0.8  # another scale,
    assert fitted.rule.accepts(files["confidence"]).tolist() == uncalibrated.accepts(own).tolist()  # the same files

    rule_id = store_accept_rule(run, fitted, "samples")
    above, below = sides(results, uncalibrated.threshold)
    new = Run.create("calibrated", above + below, run.ledger.url)
    assert new.config["identify"]["calibrations"][MODEL]["id"] == calibration
    assert new.config["identify"]["accept_rule"]["id"] == rule_id
    execute(new)
    answers = new.results().set_index("uri")
    assert answers["confidence"].to_numpy() == pytest.approx(files.loc[answers.index, "confidence"].to_numpy(),
                                                             abs=1e-4)
    assert list(answers.index[~answers["needs_review"].astype(bool)]) == above

    store.remove_calibration(calibration)
    with caplog.at_level(logging.WARNING, logger="lid_dask.runs"):
        later = Run.create("uncalibrated", above, run.ledger.url)
    assert later.config["identify"]["accept_rule"] is None
    assert (f"accept rule {rule_id} was fitted under other calibrations ({MODEL}: calibration {calibration}; this "
            f"run applies {MODEL}: none)") in caplog.text


def test_with_several_models_a_new_calibration_gives_the_consensus_the_engine_would(tmp_path):
    """Each model's answer in the ledger is taken back through the calibration the run applied and
    forward through the new one, then combined as the engine combines: with no more languages than
    the ledger keeps per model, exactly."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    applied_platt, new_platt = PlattScaling(0.5, 0.3, 10), PlattScaling(1.6, -0.4, 10)
    applied_id = ledger.evaluations.save_calibration("whisper-ct2", None, "platt", applied_platt.to_dict(), "a", 0, 0)
    config = IdentifyConfig(models=("whisper-ct2:bundled", "whisper-hf:openai/whisper-base"),
                            calibrations={"whisper-ct2": {"params": applied_platt.to_dict(), "id": applied_id}})
    own = {  # each file: the two models' own distributions, and whether hf's windows disagree
        "/a/0.wav": ({"en": 0.7, "de": 0.2, "fr": 0.1}, {"en": 0.6, "de": 0.3, "fr": 0.1}, False),
        "/a/1.wav": ({"de": 0.5, "en": 0.45, "fr": 0.05}, {"en": 0.8, "de": 0.15, "fr": 0.05}, False),
        "/a/2.wav": ({"fr": 0.9, "en": 0.06, "it": 0.04}, {"fr": 0.85, "it": 0.1, "es": 0.05}, True),
        "/a/3.wav": ({"it": 0.4, "es": 0.35, "pt": 0.25}, {"es": 0.5, "it": 0.45, "pt": 0.05}, False),
    }

    def output(model, distribution, disagree=False) -> ModelOutput:
        best = max(distribution, key=distribution.get)
        top = {k: round(v, 4) for k, v in sorted(distribution.items(), key=lambda kv: -kv[1])}
        return ModelOutput(ModelVerdict(model, best, distribution[best], top, disagree), distribution)

    info = ledger.create_run("two", {"identify": config.to_dict()})
    ledger.register(info.id, list(own))
    claims = {c.uri: c for c in ledger.claim(info.id, "me", 10, 60)}
    outcomes, expected = [], {}
    for uri, (ct2, hf, disagree) in own.items():
        recorded = [calibrate(output("whisper-ct2", ct2), applied_platt), output("whisper-hf", hf, disagree)]
        decision = combine_models(recorded, config.consensus)
        outcomes.append(Outcome(claims[uri].file_id, FileResult(
            uri=uri, language=decision.language, confidence=decision.confidence, agreement=decision.agreement,
            needs_review=bool(decision.reasons), review_reasons=decision.reasons,
            models=tuple(o.verdict for o in recorded))))
        expected[uri] = combine_models([calibrate(output("whisper-ct2", ct2), new_platt),
                                        output("whisper-hf", hf, disagree)], config.consensus)
    ledger.record(outcomes, "me", max_attempts=1, backoff=0)
    new_id = ledger.evaluations.save_calibration("whisper-ct2", None, "platt", new_platt.to_dict(), "b", 0, 0)
    truth = LabelSet(pd.DataFrame({"uri": list(own), "language": ["en", "en", "fr", "it"], "raw_label": ""}))

    files = labelled_answers(Run("two", ledger=ledger), truth).set_index("uri")
    assert files["confidence"].to_dict() == pytest.approx({u: d.confidence for u, d in expected.items()}, abs=1e-4)
    assert files["predicted"].to_dict() == {u: d.language for u, d in expected.items()}
    assert files["eligible"].to_dict() == {u: not {"models_disagree", "windows_disagree"} & set(map(str, d.reasons))
                                           for u, d in expected.items()}
    stored = ledger.results_frame(info.id).set_index("uri")["confidence"]
    assert not np.allclose(stored[list(own)], files["confidence"], atol=0.01)  # the new calibration did change them
    assert files["correct"].to_dict() == {u: d.language == t for (u, d), t in zip(expected.items(),
                                                                                 ["en", "en", "fr", "it"])}
    assert new_id != applied_id
    ledger.engine.dispose()


def test_accept_rules_in_use_follow_the_calibrations_and_are_removed(db_url):
    ledger = Ledger(db_url)
    store = ledger.evaluations
    config = IdentifyConfig(models="null")
    settings, models = rule_settings(config), [{"name": "null", "model_sha256": None}]
    params = AcceptRule(0.9, 0.95, 0.9, 100, 60, 0, 0.96).to_dict()
    before = store.save_accept_rule(models, {"null": None}, settings, params, "set", None, "a" * 64)
    calibration = store.save_calibration("null", None, "platt", {"method": "platt", "a": 0.5, "b": 0, "n": 1}, "set",
                                         0.2, 0.1)
    after = store.save_accept_rule(models, {"null": calibration}, settings, params, "set", None, "b" * 64)
    other = store.save_accept_rule(models, {"null": calibration}, rule_settings(config.replace(windows="spread:3x10")),
                                   params, "set", None, "c" * 64)
    frame = store.accept_rules_frame()
    assert frame["id"].tolist() == [before, after, other] and frame["in_use"].tolist() == [False, True, True]
    assert str(frame["created_at"].dt.tz) == "UTC"
    calibrated = config.replace(calibrations=store.latest_calibrations(["null"]))
    assert choose(store.accept_rules(["null"]), calibrated, ["null"])[0]["id"] == after
    assert store.accept_rules_frame("whisper-ct2").empty and len(store.accept_rules_frame("null")) == 3

    store.remove_calibration(calibration)
    assert store.accept_rules_frame()["in_use"].tolist() == [True, False, False]
    assert choose(store.accept_rules(["null"]), config, ["null"])[0]["id"] == before
    assert store.remove_accept_rule(before)["labels_sha256"] == "a" * 64
    rule, why = choose(store.accept_rules(["null"]), config, ["null"])
    assert rule is None and why.startswith(f"accept rule {other} was fitted under other calibrations")
    with pytest.raises(LookupError, match=f"no accept rule {before} "):
        store.remove_accept_rule(before)
    ledger.engine.dispose()
