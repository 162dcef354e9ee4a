"""TensorFlow's recorded runs (tests/fixtures/tf_<kind>.*), replayed on another backend.

tests/fixtures/make_backend_fixtures.py recorded, under TensorFlow, each
loss's linear model: its initial weights, a `.keras` file after 4 steps and
the weights and statistics after 8. No TensorFlow here: the JAX and PyTorch
suites train the same steps and compare (weights atol 1e-6, statistics rtol 1e-5).
"""

import json
import pathlib

import keras
import numpy as np

from helpers import FEATURES, NUM_CLASSES, long_tailed_data, make_loss

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
ROWS, BATCH, LEARNING_RATE = 64, 16, 0.5


def record(kind):
    """The JSON record of TensorFlow's run: `initial`, `saved` (step 4), `final` (step 8)."""
    return json.loads((FIXTURES / f"tf_{kind}.json").read_text())


def fixture_data(kind):
    """(features, labels, sample weights) of the recorded run."""
    features, labels = long_tailed_data(kind, rows=ROWS)
    return features, labels, np.linspace(0.5, 1.5, ROWS).astype("float32")


def fixture_model(kind, recorded, **compile_options):
    """The recorded linear model at its initial weights, compiled with SGD and the loss."""
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(NUM_CLASSES)])
    model.layers[-1].set_weights([np.array(recorded["initial"]["kernel"], np.float32),
                                  np.array(recorded["initial"]["bias"], np.float32)])
    compile_options.setdefault("optimizer", keras.optimizers.SGD(LEARNING_RATE))
    model.compile(loss=make_loss(kind, num_classes=NUM_CLASSES), **compile_options)
    return model


def assert_state(model, expected):
    """The model's weights (atol 1e-6) and statistics (rtol 1e-5) are those recorded."""
    np.testing.assert_allclose(model.layers[-1].kernel.numpy(), expected["kernel"], rtol=0,
                               atol=1e-6)
    np.testing.assert_allclose(model.layers[-1].bias.numpy(), expected["bias"], rtol=0, atol=1e-6)
    stats = model.loss.gradient_statistics()
    for key in ("positive", "negative"):
        np.testing.assert_allclose(stats[key], expected[key], rtol=1e-5, err_msg=key)
    assert model.loss.statistics.step_count() == expected["steps"]


def assert_saved_statistics(model, recorded):
    """A model loaded from TensorFlow's `.keras` holds the statistics saved at step 4, exactly."""
    stats = model.loss.gradient_statistics()
    for key in ("positive", "negative"):
        np.testing.assert_array_equal(stats[key], np.float32(recorded["saved"][key]), err_msg=key)
