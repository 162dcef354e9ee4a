"""The baselines and `keras_eql.functional` under PyTorch, against TensorFlow's recorded results.

The cases of tests/baseline_cases.py, recorded under TensorFlow by
tests/fixtures/make_baseline_fixtures.py (see test_jax_baselines.py): each
baseline's loss and gradient, every public function's output, and the
online-counting losses trained by `fit`, whose counts must also equal a
NumPy reference, move only in training steps (no `attach` under PyTorch)
and survive a `.keras` round trip, TensorFlow's file included.
"""

import pathlib

import numpy as np
import pytest
import torch

import keras_eql
from baseline_cases import (COUNTS, FIT_BATCH, FIT_CASES, LOSS_CASES, NUM_CLASSES, assert_fit_final,
                            assert_functional, fit_model, functional_cases, inputs,
                            recorded_results, reference_counts)

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures"
RECORD = recorded_results()


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
    assert_functional(functional_cases(keras_eql, data), RECORD["functional"])


@pytest.mark.parametrize("name", sorted(FIT_CASES))
def test_fit_counts_and_trains_like_tensorflow(name):
    record = RECORD["fit"][name]
    model, (features, labels) = fit_model(name, record)
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
    assert_fit_final(model, record["final"])


def test_counts_survive_a_keras_round_trip_and_resume_tensorflow_files(tmp_path):
    record = RECORD["fit"]["seesaw"]
    model, (features, labels) = fit_model("seesaw", record)
    model.fit(features, labels, batch_size=FIT_BATCH, verbose=0)
    model.save(tmp_path / "seesaw.keras")
    loaded = keras_eql.load_model(tmp_path / "seesaw.keras")
    np.testing.assert_array_equal(loaded.loss.sample_counts(), reference_counts(labels, 1))

    resumed = keras_eql.load_model(FIXTURES / "tf_seesaw.keras")
    np.testing.assert_array_equal(resumed.loss.sample_counts(), record["saved_counts"])
    resumed.fit(features, labels, batch_size=FIT_BATCH, shuffle=False, verbose=0)
    assert_fit_final(resumed, record["final"])


def test_a_bad_label_gives_a_nan_step_that_counts_nothing():
    model, (features, labels) = fit_model("logit_adjusted_online",
                                       RECORD["fit"]["logit_adjusted_online"])
    bad = labels.copy()
    bad[5] = NUM_CLASSES  # no background label in a softmax loss
    kernel = model.layers[-1].kernel.numpy()
    history = model.fit(features[:FIT_BATCH], bad[:FIT_BATCH], batch_size=FIT_BATCH, verbose=0)
    assert np.isnan(history.history["loss"][0])
    assert model.loss.sample_counts().sum() == 0
    np.testing.assert_array_equal(model.layers[-1].kernel.numpy(), kernel)
