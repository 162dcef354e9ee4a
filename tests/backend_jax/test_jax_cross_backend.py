"""TensorFlow's training and `.keras` files, continued under JAX.

tests/fixtures/make_backend_fixtures.py recorded, under TensorFlow, each
loss's linear model: its initial weights, a `.keras` file after 4 steps and
the weights and statistics after 8. Here JAX trains the same 8 steps from
the same weights, and resumes TensorFlow's file for the last 4: both end
where TensorFlow ended (weights atol 1e-6, statistics rtol 1e-5). A
TensorFlow file of the old statistics format (Sigmoid-EQL format 1) is
reset on load as under TensorFlow.
"""

import warnings

import keras
import numpy as np
import pytest

import keras_eql
from backend_fixtures import (BATCH, FIXTURES, assert_saved_statistics, assert_state,
                              fixture_data, fixture_model, record)
from helpers import LOSS_KINDS


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_jax_trains_and_resumes_like_tensorflow(kind):
    recorded = record(kind)
    features, labels, weights = fixture_data(kind)
    fit = dict(sample_weight=weights, batch_size=BATCH, shuffle=False, verbose=0)

    model = fixture_model(kind, recorded)
    keras_eql.attach(model).fit(features, labels, epochs=2, **fit)
    assert_state(model, recorded["final"])

    resumed = keras_eql.load_model(FIXTURES / f"tf_{kind}.keras")
    assert_saved_statistics(resumed, recorded)
    resumed.fit(features, labels, epochs=1, **fit)
    assert_state(resumed, recorded["final"])


# One per statistics kind (per-sample, gradient of the output).
@pytest.mark.parametrize("kind", ["sigmoid_eql", "efl"])
def test_a_torch_keras_file_resumes_under_jax(kind):
    # tests/fixtures/make_resume_fixtures.py: PyTorch's first 4 steps.
    recorded = record(kind)
    features, labels, weights = fixture_data(kind)
    # Its optimizer is saved as Keras's torch subclass, which needs torch to
    # import; this venv has none, so the class is given by name.
    resumed = keras_eql.load_model(FIXTURES / f"torch_{kind}.keras",
                                   custom_objects={"SGD": keras.optimizers.SGD})
    for key in ("positive", "negative"):
        np.testing.assert_allclose(resumed.loss.gradient_statistics()[key],
                                   recorded["saved"][key], rtol=1e-5, err_msg=key)
    resumed.fit(features, labels, sample_weight=weights, batch_size=BATCH, epochs=1,
                shuffle=False, verbose=0)
    assert_state(resumed, recorded["final"])


def test_a_tensorflow_file_of_statistics_format_1_is_reset_on_load():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.models.load_model(FIXTURES / "v1_sigmoid_eql.keras")
    assert any("format 1" in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert model.loss.statistics.step_count() == 0
    assert not model.loss.gradient_statistics()["positive"].any()
