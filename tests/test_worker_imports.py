"""The worker path is inference only: it never loads the evaluation, plotting or database stack."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from scipy.special import expit, log_softmax, logit

from lid_dask.calibration import PlattScaling, TemperatureScaling

HEAVY = ("matplotlib", "xarray", "sqlalchemy", "dask.dataframe", "scipy")


def test_importing_and_running_the_worker_task_loads_no_evaluation_stack():
    """A batch with a stored calibration applied, as a worker runs it."""
    script = f"""
import sys
import lid_dask.worker
from lid_dask.engine import Identifier
calibration = {{"null": {{"params": {{"method": "platt", "a": 0.5, "b": 0.1, "n": 10}}, "model_sha256": None}}}}
(result,) = Identifier(models="null", calibrations=calibration).identify_batch(["/nowhere.wav"])
assert result.models and result.models[0].model == "null", result
print(",".join(m for m in {HEAVY!r} if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_the_numpy_maps_equal_the_textbook_formulas():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(6), size=20)
    expected = np.exp(log_softmax(np.log(probabilities) / 1.7, axis=1))
    assert np.allclose(TemperatureScaling(1.7, 1).apply(probabilities), expected)
    confidence = rng.uniform(0.01, 0.99, size=50)
    assert np.allclose(PlattScaling(0.6, -0.3, 1).apply(confidence), expit(0.6 * logit(confidence) - 0.3))


def test_a_script_that_identifies_files_loads_no_pandas():
    """Start-up counts for short jobs: pandas is only for tables and manifests (about 0.2 s)."""
    script = """
import sys
import lid_dask
results = list(lid_dask.Identifier(models="null").iter_results(["/nowhere.wav"]))
assert results[0].models, results
print("pandas" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
