"""The baselines and `keras_eql.functional` under JAX, against TensorFlow's recorded results.

tests/fixtures/make_baseline_fixtures.py recorded, under TensorFlow, the
cases of tests/baseline_cases.py: every baseline's loss and gradient, every
public function's output, and the online-counting losses trained by `fit`
(weights and counts, and Seesaw's `.keras` file after the first epoch).
Here JAX computes the same from the same inputs. The counts must also equal
a NumPy reference (labels counted per training step), move only in training
steps, be model state only once `keras_eql.attach` ran, and survive a
`.keras` round trip.
"""

import pathlib

import jax
import numpy as np
import pytest

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
    weights = data["weights"] if weighted else None
    value, gradient = jax.value_and_grad(
        lambda z: loss(data[label_key], z, sample_weight=weights))(data["logits"][:, :width])
    expected = RECORD["losses"][name]
    np.testing.assert_allclose(float(value), expected["loss"], rtol=2e-6)
    np.testing.assert_allclose(np.asarray(gradient), expected["gradient"], rtol=1e-5, atol=1e-7)


def test_functional_equals_tensorflow(data):
    assert_functional(functional_cases(keras_eql, data), RECORD["functional"])


@pytest.mark.parametrize("name", sorted(FIT_CASES))
def test_fit_counts_and_trains_like_tensorflow(name):
    record = RECORD["fit"][name]
    model, (features, labels) = fit_model(name, record)
    fit = dict(batch_size=FIT_BATCH, shuffle=False, verbose=0)
    keras_eql.attach(model).fit(features, labels, epochs=1, **fit)
    np.testing.assert_array_equal(model.loss.sample_counts(), reference_counts(labels, 1))
    if name == "seesaw":  # one case: evaluate() computes the loss, but never counts
        model.evaluate(features, labels, batch_size=FIT_BATCH, verbose=0)
        np.testing.assert_array_equal(model.loss.sample_counts(), reference_counts(labels, 1))
    model.fit(features, labels, epochs=1, **fit)
    np.testing.assert_array_equal(model.loss.sample_counts(), reference_counts(labels, 2))
    assert_fit_final(model, record["final"])


def test_forgotten_attach_raises_and_leaves_the_model_intact():
    model, (features, labels) = fit_model("seesaw", RECORD["fit"]["seesaw"])
    with pytest.raises(RuntimeError, match=r"seesaw_loss.*keras_eql.attach\(model\)"):
        model.fit(features, labels, batch_size=FIT_BATCH, verbose=0)
    assert model.loss.sample_counts().sum() == 0
    np.testing.assert_array_equal(model.layers[-1].bias.numpy(),
                                  RECORD["fit"]["seesaw"]["initial"]["bias"])
    keras_eql.attach(model).fit(features, labels, batch_size=FIT_BATCH, shuffle=False, verbose=0)
    np.testing.assert_array_equal(model.loss.sample_counts(), reference_counts(labels, 1))


def test_frozen_and_given_counts_need_no_attach():
    model, (features, labels) = fit_model("seesaw", RECORD["fit"]["seesaw"])
    model.compile("sgd", loss=keras_eql.SeesawLoss(num_classes=NUM_CLASSES, update_counts=False))
    model.fit(features, labels, batch_size=FIT_BATCH, verbose=0)
    assert model.loss.sample_counts().sum() == 0
    model.compile("sgd", loss=keras_eql.BalancedSoftmax(class_counts=[1, 2, 3, 4, 5]))
    model.fit(features, labels, batch_size=FIT_BATCH, verbose=0)


def test_counts_survive_a_keras_round_trip_and_resume_tensorflow_files(tmp_path):
    record = RECORD["fit"]["seesaw"]
    model, (features, labels) = fit_model("seesaw", record)
    keras_eql.attach(model).fit(features, labels, batch_size=FIT_BATCH, verbose=0)
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
    history = keras_eql.attach(model).fit(features[:FIT_BATCH], bad[:FIT_BATCH],
                                          batch_size=FIT_BATCH, verbose=0)
    assert np.isnan(history.history["loss"][0])
    assert model.loss.sample_counts().sum() == 0
    np.testing.assert_array_equal(model.layers[-1].kernel.numpy(), kernel)
    dense = np.eye(NUM_CLASSES, dtype="float32")[labels[:4]]
    logits = features[:4, :1] * np.ones(5, "float32")
    assert np.isfinite(float(keras_eql.SeesawLoss()(dense, logits)))
    dense[:, 4] = 1.0  # two positives in a row: Seesaw needs one-hot rows
    assert np.isnan(float(keras_eql.SeesawLoss()(dense, logits)))


def test_a_custom_loop_counts_through_stateless_call(data):
    loss = keras_eql.BalancedSoftmax(num_classes=NUM_CLASSES, ignore_class=-1)
    state = [variable.value for variable in loss.counts.variables]
    labels, logits = data["ignored"], data["logits"][:, :NUM_CLASSES]
    step = jax.jit(jax.value_and_grad(lambda z, s: loss.stateless_call(s, labels, z),
                                      has_aux=True))
    for _ in range(2):
        (value, state), _ = step(logits, state)
    np.testing.assert_array_equal(np.asarray(state[0]), reference_counts(labels, 2))
    assert loss.sample_counts().sum() == 0  # values returned, nothing written
    assert float(loss.stateless_call(state, labels, logits)[0]) == pytest.approx(
        float(keras_eql.BalancedSoftmax(class_counts=np.maximum(state[0], 1.0),
                                        ignore_class=-1)(labels, logits)), rel=1e-6)
    with pytest.raises(RuntimeError, match="outside both"):
        jax.grad(lambda z: loss(labels, z))(logits)


def test_static_checks_raise_as_under_tensorflow():
    loss = keras_eql.SeesawLoss(num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match="SeesawLoss 'seesaw_loss': logits have 4 class columns"):
        loss(np.zeros(3, "int32"), np.zeros((3, 4), "float32"))
    with pytest.raises(ValueError, match="EQLv1: labels of shape"):
        keras_eql.EQLv1(rare_mask=[0, 1])(np.zeros((3, 3)), np.zeros((3, 2), "float32"))
    with pytest.raises(ValueError, match="LogitAdjustedLoss: logits"):
        keras_eql.LogitAdjustedLoss()(np.zeros(3, "int32"), np.zeros((3, 2), "int32"))
    with pytest.raises(ValueError, match="logit_adjust: 2 class_priors"):
        keras_eql.logit_adjust(np.zeros((1, 3)), class_priors=[1, 2])


def test_registry_and_layers_run_under_jax():
    assert isinstance(keras_eql.get("seesaw"), keras_eql.SeesawLoss)
    assert keras_eql.available_losses()["class_balanced"] == "class_counts"
    scores = keras_eql.SigmoidEQLScores()(np.zeros((1, 3), "float32"))
    np.testing.assert_allclose(np.asarray(scores), [[0.25, 0.25, 0.5]])


# The examples of keras_eql.functional and keras_eql._baseline_math run under JAX
# too (NumPy inputs); their functions are compared with TensorFlow above.
@pytest.mark.parametrize("module_name", [
    "keras_eql.baselines", "keras_eql._seesaw", "keras_eql.layers", "keras_eql.registry"])
def test_docstring_examples_run_under_jax(module_name):
    import doctest

    module = __import__(module_name, fromlist=["_"])
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
