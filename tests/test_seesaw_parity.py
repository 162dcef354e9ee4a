"""SeesawLoss against an independent NumPy re-statement of mmdetection's code.

mmdetection cannot be installed here, so `_MmdetSeesaw` restates, from its
published source (`mmdet/models/losses/seesaw_loss.py`), what
`SeesawLoss.forward` (the `C + 2` objectness layout) and `seesaw_ce_loss`
(plain) compute, including when the batch enters `cum_samples`: BEFORE the
loss, so step 0 already mitigates. Rows that keras_eql ignores (label -1)
are dropped on the reference side, as a detector would drop them.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_eql.baselines import SeesawLoss

C, ROWS, STEPS = 6, 24, 6
P, Q, EPS = 0.8, 2.0, 1e-2


def _softmax(a):
    a = a - a.max(-1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(-1, keepdims=True)


def _seesaw_ce_rows(scores, labels, cum_samples):
    """mmdet's `seesaw_ce_loss` per row (reduction 'none') and d(row)/d(scores)."""
    onehot = np.eye(C)[labels]
    weights = np.ones_like(scores)
    counts = np.maximum(cum_samples, 1.0)
    sample_ratio = counts[None, :] / counts[:, None]
    lower = (sample_ratio < 1.0).astype(np.float64)
    weights *= (sample_ratio ** P * lower + (1 - lower))[labels]
    probabilities = _softmax(scores)  # detached in mmdet
    own = probabilities[np.arange(len(labels)), labels]
    score_matrix = probabilities / np.maximum(own, EPS)[:, None]
    higher = (score_matrix > 1.0).astype(np.float64)
    weights *= score_matrix ** Q * higher + (1 - higher)
    adjusted = scores + np.log(weights) * (1 - onehot)
    shifted = adjusted - adjusted.max(-1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(-1))
    rows = log_z - shifted[np.arange(len(labels)), labels]
    return rows, _softmax(adjusted) - onehot


class _MmdetSeesaw:
    """`cum_samples` and one step of mmdet's loss, on the counted rows only."""

    def __init__(self, objectness):
        self.objectness = objectness
        self.cum_samples = np.zeros(C + 1)

    def step(self, logits, labels):
        counted = labels >= 0
        z, y = logits[counted].astype(np.float64), labels[counted]
        for label in np.unique(y):  # the batch enters the counts first
            self.cum_samples[label] += np.sum(y == label)
        n = len(y)
        grad = np.zeros_like(logits, dtype=np.float64)
        counted_grad = np.zeros_like(z)
        if not self.objectness:
            rows, local = _seesaw_ce_rows(z, y, self.cum_samples[:C])
            counted_grad[:] = local / n
            grad[counted] = counted_grad
            return rows.mean(), grad
        positive = y < C
        rows, local = _seesaw_ce_rows(z[positive, :C], y[positive], self.cum_samples[:C])
        objectness = z[:, C:]
        object_labels = (y == C).astype(np.int64)  # 0: object, 1: background
        shifted = objectness - objectness.max(-1, keepdims=True)
        object_rows = np.log(np.exp(shifted).sum(-1)) - shifted[np.arange(n), object_labels]
        counted_grad[np.nonzero(positive)[0], :C] = local / n
        counted_grad[:, C:] = (_softmax(objectness) - np.eye(2)[object_labels]) / n
        grad[counted] = counted_grad
        return (rows.sum() + object_rows.sum()) / n, grad


def _inputs(objectness, seed):
    rng = np.random.default_rng(seed)
    width = C + 2 if objectness else C
    frequencies = 0.55 ** np.arange(C)
    for _ in range(STEPS):
        labels = rng.choice(C, size=ROWS, p=frequencies / frequencies.sum())
        if objectness:
            labels[rng.random(ROWS) < 0.4] = C
        labels[rng.random(ROWS) < 0.15] = -1
        yield rng.normal(0.0, 2.5, size=(ROWS, width)).astype(np.float32), labels


def _step_function(mode):
    def step(loss, labels, logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = loss(labels, logits)
        return value, tape.gradient(value, logits)

    return step if mode == "eager" else tf.function(step, jit_compile=True)


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("objectness", [False, True])
def test_every_step_equals_mmdet_from_step_zero(objectness, mode):
    loss = SeesawLoss(num_classes=C, objectness=objectness, ignore_class=-1)
    reference = _MmdetSeesaw(objectness)
    step = _step_function(mode)
    for t, (logits, labels) in enumerate(_inputs(objectness, seed=11 + objectness)):
        expected_loss, expected_grad = reference.step(logits, labels)
        value, grad = step(loss, tf.constant(labels, tf.int32), tf.constant(logits))
        np.testing.assert_allclose(float(value), expected_loss, rtol=1e-5, err_msg=f"loss, step {t}")
        np.testing.assert_allclose(grad.numpy(), expected_grad, rtol=0,
                                   atol=1e-5 * np.abs(expected_grad).max(), err_msg=f"grad, step {t}")
        np.testing.assert_array_equal(loss.sample_counts(), reference.cum_samples[:C],
                                      err_msg=f"counts, step {t}")


def test_evaluation_uses_the_batch_counts_without_persisting_them():
    logits, labels = next(_inputs(False, seed=5))
    counted = labels >= 0
    loss = SeesawLoss(num_classes=C, ignore_class=-1)
    model_free_value = float(loss(tf.constant(labels), tf.constant(logits)))
    # Step 0 with the batch's own counts: mitigation is already on.
    rows, _ = _seesaw_ce_rows(logits[counted].astype(np.float64), labels[counted],
                              np.bincount(labels[counted], minlength=C).astype(np.float64))
    np.testing.assert_allclose(model_free_value, rows.mean(), rtol=1e-5)
    assert not loss.sample_counts().any()

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(C)])
    model.compile("sgd", loss=loss, jit_compile=True)
    features = np.random.default_rng(0).normal(size=(ROWS, 4)).astype("float32")
    model.evaluate(features, labels, verbose=0)
    model.predict(features, verbose=0)
    assert not loss.sample_counts().any()
    model.fit(features, labels, batch_size=ROWS, epochs=1, verbose=0)
    np.testing.assert_array_equal(loss.sample_counts(), np.bincount(labels[counted], minlength=C))
