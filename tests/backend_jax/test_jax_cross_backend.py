"""TensorFlow's training and `.keras` files, continued under JAX.

tests/fixtures/make_backend_fixtures.py recorded, under TensorFlow, each
loss's linear model: its initial weights, a `.keras` file after 4 steps and
the weights and statistics after 8. Here JAX trains the same 8 steps from
the same weights, and resumes TensorFlow's file for the last 4: both end
where TensorFlow ended (weights atol 1e-6, statistics rtol 1e-5). A
TensorFlow file of the old statistics format (Sigmoid-EQL format 1) is
reset on load as under TensorFlow.
"""

import json
import pathlib
import warnings

import keras
import numpy as np
import pytest

import keras_eql
from helpers import FEATURES, LOSS_KINDS, NUM_CLASSES, long_tailed_data, make_loss

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures"
ROWS, BATCH, LEARNING_RATE = 64, 16, 0.5


def _data(kind):
    features, labels = long_tailed_data(kind, rows=ROWS)
    return features, labels, np.linspace(0.5, 1.5, ROWS).astype("float32")


def _assert_state(model, expected):
    np.testing.assert_allclose(model.layers[-1].kernel.numpy(), expected["kernel"], rtol=0,
                               atol=1e-6)
    np.testing.assert_allclose(model.layers[-1].bias.numpy(), expected["bias"], rtol=0, atol=1e-6)
    stats = model.loss.gradient_statistics()
    for key in ("positive", "negative"):
        np.testing.assert_allclose(stats[key], expected[key], rtol=1e-5, err_msg=key)
    assert model.loss.statistics.step_count() == expected["steps"]


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_jax_trains_and_resumes_like_tensorflow(kind):
    record = json.loads((FIXTURES / f"tf_{kind}.json").read_text())
    features, labels, weights = _data(kind)
    fit = dict(sample_weight=weights, batch_size=BATCH, shuffle=False, verbose=0)

    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(NUM_CLASSES)])
    model.layers[-1].set_weights([np.array(record["initial"]["kernel"], np.float32),
                                  np.array(record["initial"]["bias"], np.float32)])
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE),
                  loss=make_loss(kind, num_classes=NUM_CLASSES))
    keras_eql.attach(model).fit(features, labels, epochs=2, **fit)
    _assert_state(model, record["final"])

    resumed = keras_eql.load_model(FIXTURES / f"tf_{kind}.keras")
    stats = resumed.loss.gradient_statistics()
    for key in ("positive", "negative"):
        np.testing.assert_array_equal(stats[key], np.float32(record["saved"][key]), err_msg=key)
    resumed.fit(features, labels, epochs=1, **fit)
    _assert_state(resumed, record["final"])


def test_a_tensorflow_file_of_statistics_format_1_is_reset_on_load():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.models.load_model(FIXTURES / "v1_sigmoid_eql.keras")
    assert any("format 1" in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert model.loss.statistics.step_count() == 0
    assert not model.loss.gradient_statistics()["positive"].any()
