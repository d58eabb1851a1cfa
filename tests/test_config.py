"""The engine configuration: checked once, the same object from the CLI to every worker."""

from __future__ import annotations

import dataclasses

import pytest

from lid_dask.config import IdentifyConfig
from lid_dask.consensus import ConsensusConfig
from lid_dask.orchestrator import RunSettings


def test_round_trip_through_json_as_the_ledger_and_workers_see_it():
    config = IdentifyConfig(models=["whisper-ct2:bundled", "null"], windows="spread:3x10", languages="en, fr",
                            consensus=ConsensusConfig(model_weights={"null": 0.5}, early_stop=None),
                            allow_private_network=["10.0.0.0/8"])
    assert config.models == ("whisper-ct2:bundled", "null") and config.languages == ("en", "fr")
    assert IdentifyConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize("data, message", [
    ({"modles": ["null"]}, "unknown engine setting modles; known: models"),
    ({"consensus": {"low_confidence": 0.5, "early_stopp": 1}}, "unknown consensus setting early_stopp"),
    ({"vad": "loud"}, "unknown speech detector 'loud'"),
    ({"windows": "sideways"}, "unknown window strategy"),
    ({"languages": ["en", "martian"]}, "martian"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"models": []}, "at least one model"),
])
def test_a_bad_setting_is_a_clear_error(data, message):
    with pytest.raises(ValueError, match=message):
        IdentifyConfig.from_dict(data)


def test_unknown_run_settings_are_errors_too():
    with pytest.raises(ValueError, match="unknown run setting batch_file;"):
        RunSettings.from_config({"identify": {}}, batch_file=3)
    assert RunSettings.from_config({"identify": {"vad": "energy"}, "batch_files": 3}).identify.vad == "energy"


def test_engine_and_run_settings_never_share_a_name():
    """Run.create sends each keyword to one of the two by its name."""
    engine = {f.name for f in dataclasses.fields(IdentifyConfig)}
    run = {f.name for f in dataclasses.fields(RunSettings)}
    assert engine & run == set()
