"""`.keras` files written under JAX and PyTorch resume under TensorFlow.

tests/fixtures/make_resume_fixtures.py wrote them.

Each loss's file holds the first 4 steps of the run that
tests/fixtures/make_backend_fixtures.py recorded under TensorFlow; resumed
here for the last 4, it ends where TensorFlow's own run ended (weights atol
1e-6, statistics rtol 1e-5).
"""

import json
import pathlib

import keras
import numpy as np
import pytest

import keras_eql
from baseline_cases import FIT_BATCH, fit_data
from helpers import long_tailed_data

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
ROWS, BATCH = 64, 16


# One per statistics kind (per-sample, gradient of the output); the JAX and
# PyTorch suites resume TensorFlow's files of all four.
@pytest.mark.parametrize("backend", ["jax", "torch"])
@pytest.mark.parametrize("kind", ["sigmoid_eql", "efl"])
def test_a_jax_or_torch_keras_file_resumes_under_tensorflow(kind, backend):
    record = json.loads((FIXTURES / f"tf_{kind}.json").read_text())
    features, labels = long_tailed_data(kind, rows=ROWS)
    weights = np.linspace(0.5, 1.5, ROWS).astype("float32")
    # Keras saves the PyTorch backend's optimizer as its torch subclass
    # (keras.src.backend.torch.optimizers), which needs torch to import: where
    # torch is not installed, the optimizer's class is given by name.
    custom_objects = {"SGD": keras.optimizers.SGD} if backend == "torch" else None
    model = keras_eql.attach(keras_eql.load_model(FIXTURES / f"{backend}_{kind}.keras",
                                                  custom_objects=custom_objects))
    stats = model.loss.gradient_statistics()
    for key in ("positive", "negative"):
        np.testing.assert_allclose(stats[key], record["saved"][key], rtol=1e-5, err_msg=key)
    model.fit(features, labels, sample_weight=weights, batch_size=BATCH, epochs=1,
              shuffle=False, verbose=0)
    final = record["final"]
    np.testing.assert_allclose(model.layers[-1].kernel.numpy(), final["kernel"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.layers[-1].bias.numpy(), final["bias"], rtol=0, atol=1e-6)
    stats = model.loss.gradient_statistics()
    for key in ("positive", "negative"):
        np.testing.assert_allclose(stats[key], final[key], rtol=1e-5, err_msg=key)
    assert model.loss.statistics.step_count() == final["steps"]


def test_a_jax_seesaw_file_resumes_its_counts_under_tensorflow():
    """tests/fixtures/make_resume_fixtures.py (under JAX) saved SeesawLoss's fit case after its first epoch."""
    record = json.loads((FIXTURES / "tf_baselines.json").read_text())["fit"]["seesaw"]
    features, labels = fit_data("classes")
    model = keras_eql.load_model(FIXTURES / "jax_seesaw.keras")
    np.testing.assert_array_equal(model.loss.sample_counts(), record["saved_counts"])
    model.fit(features, labels, batch_size=FIT_BATCH, shuffle=False, verbose=0)
    final = record["final"]
    np.testing.assert_allclose(model.layers[-1].kernel.numpy(), final["kernel"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.layers[-1].bias.numpy(), final["bias"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(model.loss.sample_counts(), final["counts"])
