"""Limiting cases against Keras' own losses, and extreme logits."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_eql
from helpers import LOSS_KINDS, make_loss

ROWS, CLASSES = 24, 7


def _inputs(seed=0, scale=3.0, background=True):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(ROWS, CLASSES)) * scale).astype("float32")
    labels = rng.integers(0, CLASSES + (1 if background else 0), size=ROWS)
    return logits, labels


def _value_and_grad(loss, labels, logits, **kwargs):
    logits = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        value = loss(labels, logits, **kwargs)
    return value.numpy(), tape.gradient(value, logits).numpy()


def _dense(labels):
    return np.eye(CLASSES + 1, dtype="float32")[labels][:, :CLASSES]


def test_efl_with_zero_scale_is_keras_binary_focal_times_classes():
    ours = keras_eql.EqualizedFocalLoss(scale=0.0, alpha=0.25, gamma=2.0)
    keras_loss = keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=True, alpha=0.25, gamma=2.0, from_logits=True)
    for step in range(3):  # the statistics move, with scale 0 nothing changes
        logits, labels = _inputs(step)
        value, grad = _value_and_grad(ours, labels, logits)
        expected, expected_grad = _value_and_grad(keras_loss, _dense(labels), logits)
        # Keras averages over the class axis; ours sums (detection convention).
        np.testing.assert_allclose(value, CLASSES * expected, rtol=1e-5)
        np.testing.assert_allclose(grad, CLASSES * expected_grad, rtol=0,
                                   atol=1e-5 * np.abs(grad).max())
    assert ours.statistics.steps.numpy() == 3


def test_sigmoid_eql_with_unit_weights_is_binary_crossentropy():
    ours = keras_eql.SigmoidEQL(mapping=lambda ratio: tf.ones_like(ratio))
    keras_loss = keras.losses.BinaryCrossentropy(from_logits=True)
    for step in range(3):
        logits, labels = _inputs(step)
        value, grad = _value_and_grad(ours, labels, logits)
        expected, expected_grad = _value_and_grad(keras_loss, _dense(labels), logits)
        np.testing.assert_allclose(value, CLASSES * expected, rtol=1e-5)
        np.testing.assert_allclose(grad, CLASSES * expected_grad, rtol=0,
                                   atol=1e-5 * np.abs(grad).max())


@pytest.mark.parametrize("kind, keras_loss", [
    ("softmax_eql", keras.losses.SparseCategoricalCrossentropy(from_logits=True)),
    ("sigmoid_eql", keras.losses.BinaryCrossentropy(from_logits=True)),
])
def test_step_zero_is_the_plain_base_loss(kind, keras_loss):
    logits, labels = _inputs(background=(kind != "softmax_eql"))
    value, grad = _value_and_grad(make_loss(kind), labels, logits)
    targets = labels if kind == "softmax_eql" else _dense(labels)
    factor = 1 if kind == "softmax_eql" else CLASSES
    expected, expected_grad = _value_and_grad(keras_loss, targets, logits)
    np.testing.assert_allclose(value, factor * expected, rtol=1e-5)
    np.testing.assert_allclose(grad, factor * expected_grad, rtol=0, atol=1e-5 * np.abs(grad).max())


def test_efl_step_zero_is_focal_loss():
    logits, labels = _inputs()
    value, _ = _value_and_grad(keras_eql.EqualizedFocalLoss(), labels, logits)
    expected, _ = _value_and_grad(keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=True, from_logits=True), _dense(labels), logits)
    np.testing.assert_allclose(value, CLASSES * expected, rtol=1e-5)


EXTREMES = np.array([[1e4, -1e4, 0.0, 50.0, -50.0, 16.7, -88.8]], "float32")


@pytest.mark.parametrize("input_dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_extreme_logits_give_finite_loss_and_gradient(kind, input_dtype):
    logits = np.concatenate([EXTREMES, -EXTREMES], 0)
    labels = np.array([0, 1]) if kind == "softmax_eql" else np.array([1, CLASSES])
    for loss_dtype in (None, input_dtype):
        loss = make_loss(kind, dtype=loss_dtype)
        tensor = tf.cast(tf.constant(logits), input_dtype)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            value = loss(labels, tensor)
        grad = tape.gradient(value, tensor)
        assert np.isfinite(float(value)), (loss_dtype, float(value))
        assert np.all(np.isfinite(tf.cast(grad, tf.float32).numpy())), grad
        stats = loss.gradient_statistics()
        assert all(np.all(np.isfinite(v)) for v in stats.values()), stats


def test_authors_efl_overflow_point_is_finite_here():
    """The authors' -log(sigmoid) is inf for a negative at z >= 16.6 in float32."""
    logits = np.array([[17.0, 20.0, 100.0]], "float32")
    loss = keras_eql.EqualizedFocalLoss(num_classes=3)
    value, grad = _value_and_grad(loss, np.array([3]), logits)
    # For z >> 0 and y = 0: loss = 0.75 * z (sum of the three columns).
    np.testing.assert_allclose(value, 0.75 * logits.sum(), rtol=1e-5)
    assert np.all(np.isfinite(grad))
