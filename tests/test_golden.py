"""Golden parity with the authors' semantics, step by step, in three modes.

The golden files use the authors' label layouts; they are mapped onto
keras_eql's conventions here (never in the library):

* EFL/EQFL: authors' `0` = background, `k` = class k (column k-1), `-1` =
  ignore  ->  ours `C` = background, `k-1`, `-1`.
* `loss_weight` -> a constant `sample_weight`.
* EQFL's IoU scores -> dense soft targets; ignored rows -> sample weight 0.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras_eql
from conftest import load_golden
from golden_cases import GOLDEN_NAMES, golden_case

MODES = ["eager", "function", "jit"]


def _runner(mode):
    """A `step(loss, labels, logits, weights) -> (loss, grad)` for `mode`."""

    def step(loss, labels, logits, weights):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = loss(labels, logits, sample_weight=weights)
        return value, tape.gradient(value, logits)

    if mode == "eager":
        return step
    return tf.function(step, jit_compile=(mode == "jit"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_golden_parity(name, mode):
    golden, make, inputs = golden_case(name)
    loss = make(lazy=(mode == "function"))
    step = _runner(mode)
    for t, (labels, weights) in enumerate(inputs):
        logits = tf.constant(golden["logits"][t], tf.float32)
        weights = None if weights is None else tf.constant(weights)
        value, grad = step(loss, tf.constant(labels), logits, weights)
        np.testing.assert_allclose(float(value), golden["loss"][t], rtol=1e-5, err_msg=f"loss, step {t}")
        grad_scale = np.abs(golden["grad"][t]).max()
        np.testing.assert_allclose(grad.numpy(), golden["grad"][t], rtol=0, atol=1e-5 * grad_scale,
                                   err_msg=f"grad, step {t}")
        stats = loss.gradient_statistics()
        np.testing.assert_allclose(stats["positive"], golden["pos_grad"][t], rtol=1e-5,
                                   err_msg=f"positive, step {t}")
        np.testing.assert_allclose(stats["negative"], golden["neg_grad"][t], rtol=1e-5,
                                   err_msg=f"negative, step {t}")
        np.testing.assert_allclose(stats["ratio"], golden["pos_neg"][t], rtol=1e-5,
                                   err_msg=f"ratio, step {t}")
    assert float(loss.statistics.steps.numpy()) == len(inputs)


def test_softmax_eql_identity_positive_equals_negative():
    """Each row's |target gradient| equals its non-target sum (reference §3)."""
    golden, make, inputs = golden_case("softmax_eql")
    loss = make(lazy=False)
    step = _runner("eager")
    for t, (labels, weights) in enumerate(inputs):
        step(loss, tf.constant(labels), tf.constant(golden["logits"][t], tf.float32), weights)
        stats = loss.gradient_statistics()
        np.testing.assert_allclose(stats["positive"].sum(), stats["negative"].sum(), rtol=1e-5)


def test_sigmoid_eql_weights_match_golden():
    golden = load_golden("sigmoid_eql")
    for t in range(golden["pos_neg_used"].shape[0]):
        positive, negative = keras_eql.functional.sigmoid_eql_weights(golden["pos_neg_used"][t])
        np.testing.assert_allclose(positive.numpy(), golden["pos_w"][t][:-1], rtol=1e-5)
        np.testing.assert_allclose(negative.numpy(), golden["neg_w"][t][:-1], rtol=1e-5, atol=1e-12)


def test_sigmoid_eql_scores_match_reference():
    logits = np.random.default_rng(0).normal(size=(6, 5)) * 3
    probabilities = 1 / (1 + np.exp(-logits))
    expected = probabilities.copy()
    expected[:, :-1] *= 1 - probabilities[:, -1:]
    scores = keras_eql.sigmoid_eql_scores(tf.constant(logits, tf.float32))
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-5)
    layer = keras_eql.SigmoidEQLScores()
    np.testing.assert_allclose(layer(tf.constant(logits, tf.float32)).numpy(), expected, rtol=1e-5)
