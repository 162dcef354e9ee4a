"""The baselines and `keras_eql.functional` under PyTorch, against TensorFlow's recorded results.

The cases of tests/baseline_cases.py, recorded under TensorFlow by
tests/fixtures/make_baseline_fixtures.py (see test_jax_baselines.py): each
baseline's loss and gradient, every public function's output, and the
online-counting losses trained by `fit`, whose counts must also equal a
NumPy reference, move only in training steps (no `attach` under PyTorch)
and survive a `.keras` round trip, TensorFlow's file included.
"""

import json
import pathlib

import keras
import numpy as np
import pytest
import torch

import keras_eql
from baseline_cases import (COUNTS, FEATURES, FIT_BATCH, FIT_CASES, LEARNING_RATE, LOSS_CASES,
                            NUM_CLASSES, fit_data, functional_cases, inputs, reference_counts)

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures"
RECORD = json.loads((FIXTURES / "tf_baselines.json").read_text())


@pytest.fixture(scope="module")
def data():
    return inputs()


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_loss_and_gradient_equal_tensorflow(name, data):
    cls, kwargs, label_key, width, weighted, counted = LOSS_CASES[name]
    loss = getattr(keras_eql, cls)(**kwargs)
    if counted:
        loss.counts.assign(COUNTS)
    logits = torch.tensor(data["logits"][:, :width], requires_grad=True)
    weights = data["weights"] if weighted else None
    value = loss(data[label_key], logits, sample_weight=weights)
    value.backward()
    expected = RECORD["losses"][name]
    np.testing.assert_allclose(float(value), expected["loss"], rtol=2e-6)
    np.testing.assert_allclose(logits.grad.numpy(), expected["gradient"], rtol=1e-5, atol=1e-7)


def test_functional_equals_tensorflow(data):
    outputs = functional_cases(keras_eql, data)
    assert sorted(outputs) == sorted(RECORD["functional"])
    for name, value in outputs.items():
        parts = value if isinstance(value, tuple) else (value,)
        expected = RECORD["functional"][name]
        expected = expected if isinstance(value, tuple) else [expected]
        for part, want in zip(parts, expected, strict=True):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(part).astype(np.float64), want,
                                       rtol=1e-5, atol=1e-7, err_msg=name)


def _model(name, record):
    cls, kwargs, label_key, width = FIT_CASES[name]
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(width)])
    model.layers[-1].set_weights([np.array(record["initial"]["kernel"], np.float32),
                                  np.array(record["initial"]["bias"], np.float32)])
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE),
                  loss=getattr(keras_eql, cls)(**kwargs))
    return model, fit_data(label_key)


def _assert_final(model, expected):
    np.testing.assert_allclose(model.layers[-1].kernel.numpy(), expected["kernel"], atol=1e-6)
    np.testing.assert_allclose(model.layers[-1].bias.numpy(), expected["bias"], atol=1e-6)
    np.testing.assert_array_equal(model.loss.sample_counts(), expected["counts"])


@pytest.mark.parametrize("name", sorted(FIT_CASES))
def test_fit_counts_and_trains_like_tensorflow(name):
    record = RECORD["fit"][name]
    model, (features, labels) = _model(name, record)
    fit = dict(batch_size=FIT_BATCH, shuffle=False, verbose=0)
    assert keras_eql.attach(model) is model  # a no-op under PyTorch
    model.fit(features, labels, epochs=1, **fit)
    np.testing.assert_array_equal(model.loss.sample_counts(), reference_counts(labels, 1))
    if name == "seesaw":  # one case: evaluate() and predict() compute no counts
        model.evaluate(features, labels, batch_size=FIT_BATCH, verbose=0)
        model.predict(features, batch_size=FIT_BATCH, verbose=0)
        np.testing.assert_array_equal(model.loss.sample_counts(), reference_counts(labels, 1))
    model.fit(features, labels, epochs=1, **fit)
    np.testing.assert_array_equal(model.loss.sample_counts(), reference_counts(labels, 2))
    _assert_final(model, record["final"])


def test_counts_survive_a_keras_round_trip_and_resume_tensorflow_files(tmp_path):
    record = RECORD["fit"]["seesaw"]
    model, (features, labels) = _model("seesaw", record)
    model.fit(features, labels, batch_size=FIT_BATCH, verbose=0)
    model.save(tmp_path / "seesaw.keras")
    loaded = keras_eql.load_model(tmp_path / "seesaw.keras")
    np.testing.assert_array_equal(loaded.loss.sample_counts(), reference_counts(labels, 1))

    resumed = keras_eql.load_model(FIXTURES / "tf_seesaw.keras")
    np.testing.assert_array_equal(resumed.loss.sample_counts(), record["saved_counts"])
    resumed.fit(features, labels, batch_size=FIT_BATCH, shuffle=False, verbose=0)
    _assert_final(resumed, record["final"])


def test_a_bad_label_gives_a_nan_step_that_counts_nothing():
    model, (features, labels) = _model("logit_adjusted_online",
                                       RECORD["fit"]["logit_adjusted_online"])
    bad = labels.copy()
    bad[5] = NUM_CLASSES  # no background label in a softmax loss
    kernel = model.layers[-1].kernel.numpy()
    history = model.fit(features[:FIT_BATCH], bad[:FIT_BATCH], batch_size=FIT_BATCH, verbose=0)
    assert np.isnan(history.history["loss"][0])
    assert model.loss.sample_counts().sum() == 0
    np.testing.assert_array_equal(model.layers[-1].kernel.numpy(), kernel)
