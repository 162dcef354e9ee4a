"""Statistics semantics: timing, empty steps, non-finite steps, decay, freezing,
label layouts and ignore semantics."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_eql
from helpers import LOSS_KINDS, make_loss

CLASSES = 4


def _step(loss, labels, logits, sample_weight=None):
    logits = tf.constant(np.asarray(logits, "float32"))
    with tf.GradientTape() as tape:
        tape.watch(logits)
        value = loss(labels, logits, sample_weight=sample_weight)
    return value, tape.gradient(value, logits)


def _logits(rows, seed=0, width=CLASSES):
    return np.random.default_rng(seed).normal(size=(rows, width)).astype("float32")


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_increments_fold_in_after_the_step_that_made_them(kind):
    loss = make_loss(kind, num_classes=CLASSES)
    labels = np.array([0, 1, 2, 3, 0, 1])
    ratio_before = loss.gradient_statistics()["ratio"]
    _step(loss, labels, _logits(6))
    ratio_after = loss.gradient_statistics()["ratio"]
    assert not np.array_equal(ratio_before, ratio_after)


@pytest.mark.parametrize("kind", ["sigmoid_eql", "efl", "eqfl"])
def test_all_ignored_batch_is_finite_and_leaves_the_ratio(kind):
    loss = make_loss(kind, num_classes=CLASSES)
    initial = loss.gradient_statistics()
    value, grad = _step(loss, np.full(5, -1), _logits(5))
    assert np.isfinite(float(value)) and float(value) == 0.0
    assert np.all(grad.numpy() == 0.0)
    after = loss.gradient_statistics()
    for key in initial:  # the authors' Sigmoid-EQL would reset 100 -> 0 here
        np.testing.assert_array_equal(after[key], initial[key])


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_empty_batch_is_finite_and_leaves_the_statistics(kind):
    loss = make_loss(kind, num_classes=CLASSES)
    _step(loss, np.array([0, 1, 2]), _logits(3))
    before = loss.gradient_statistics()
    value, grad = _step(loss, np.zeros([0], "int32"), np.zeros([0, CLASSES]))
    assert np.isfinite(float(value)) and grad.shape == (0, CLASSES)
    after = loss.gradient_statistics()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])


@pytest.mark.parametrize("kind", ["sigmoid_eql", "efl", "eqfl"])
def test_batch_without_positives_is_finite(kind):
    loss = make_loss(kind, num_classes=CLASSES)
    value, grad = _step(loss, np.full(4, CLASSES), _logits(4))  # background only
    assert np.isfinite(float(value)) and np.all(np.isfinite(grad.numpy()))
    stats = loss.gradient_statistics()
    assert np.all(stats["positive"] == 0) and np.all(stats["negative"] > 0)
    assert np.all(np.isfinite(stats["ratio"]))


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_nan_logits_report_nan_but_keep_statistics(kind):
    loss = make_loss(kind, num_classes=CLASSES)
    _step(loss, np.array([0, 1, 2, 3]), _logits(4))
    before = loss.gradient_statistics()
    steps = float(loss.statistics.steps.numpy())
    for bad in (np.nan, np.inf):
        logits = _logits(4, seed=1)
        logits[1, 2] = bad
        value, _ = _step(loss, np.array([0, 1, 2, 3]), logits)
        assert not np.isfinite(float(value))
    after = loss.gradient_statistics()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
    assert float(loss.statistics.steps.numpy()) == steps


def test_nan_logits_in_ignored_rows_do_not_leak():
    loss = keras_eql.EqualizedFocalLoss(num_classes=CLASSES)
    logits = _logits(3)
    logits[2] = np.nan
    value, grad = _step(loss, np.array([0, 1, -1]), logits)
    assert np.isfinite(float(value)) and np.all(np.isfinite(grad.numpy()))
    assert np.all(np.isfinite(loss.gradient_statistics()["ratio"]))


def test_ignore_class_leaves_the_denominator_as_in_keras():
    logits = _logits(6)
    labels = np.array([0, 1, -1, 2, -1, 3])
    ours, _ = _step(keras_eql.SoftmaxEQL(num_classes=CLASSES, ignore_class=-1), labels, logits)
    keras_value, _ = _step(keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=-1), labels, logits)
    np.testing.assert_allclose(float(ours), float(keras_value), rtol=1e-6)


def test_decay_forgets_exponentially():
    decayed = keras_eql.SigmoidEQL(num_classes=CLASSES, decay=0.5)
    plain = keras_eql.SigmoidEQL(num_classes=CLASSES)
    increments = []
    for seed in range(3):
        before = plain.gradient_statistics()["positive"]
        _step(plain, np.array([0, 1, 2, 3]), _logits(4, seed))
        _step(decayed, np.array([0, 1, 2, 3]), _logits(4, seed))
        increments.append(plain.gradient_statistics()["positive"] - before)
    # The ratio reshapes later steps differently, so compare the recursion
    # on the increments the decayed loss itself produced: check the last step.
    expected = 0.25 * increments[0] + 0.5 * increments[1] + increments[2]
    assert not np.allclose(decayed.gradient_statistics()["positive"],
                           plain.gradient_statistics()["positive"])
    # Step 1 uses the same weights in both (ratio 100 at step 0), so the first
    # increment is shared; verify the recursion on a loss with frozen weights.
    frozen = keras_eql.SigmoidEQL(num_classes=CLASSES, decay=0.5,
                                  mapping=lambda ratio: tf.ones_like(ratio))
    unit = keras_eql.SigmoidEQL(num_classes=CLASSES, mapping=lambda ratio: tf.ones_like(ratio))
    unit_increments = []
    for seed in range(3):
        before = unit.gradient_statistics()["positive"]
        _step(unit, np.array([0, 1, 2, 3]), _logits(4, seed))
        _step(frozen, np.array([0, 1, 2, 3]), _logits(4, seed))
        unit_increments.append(unit.gradient_statistics()["positive"] - before)
    expected = 0.25 * unit_increments[0] + 0.5 * unit_increments[1] + unit_increments[2]
    np.testing.assert_allclose(frozen.gradient_statistics()["positive"], expected, rtol=1e-5)


def test_update_statistics_false_freezes_but_still_uses_them():
    trained = keras_eql.EqualizedFocalLoss(num_classes=CLASSES)
    for seed in range(3):
        _step(trained, np.array([0, 0, 0, 1]), _logits(4, seed))
    frozen = keras_eql.EqualizedFocalLoss(num_classes=CLASSES, update_statistics=False)
    frozen.statistics.assign(trained.statistics.positive.numpy(),
                             trained.statistics.negative.numpy(), 3.0)
    before = frozen.gradient_statistics()
    value, _ = _step(frozen, np.array([0, 1, 2, 3]), _logits(4, 9))
    reference = keras_eql.EqualizedFocalLoss(num_classes=CLASSES)
    reference.statistics.assign(trained.statistics.positive.numpy(),
                                trained.statistics.negative.numpy(), 3.0)
    expected, _ = _step(reference, np.array([0, 1, 2, 3]), _logits(4, 9))
    np.testing.assert_allclose(float(value), float(expected), rtol=1e-6)
    after = frozen.gradient_statistics()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4)])
@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_any_leading_shape_equals_flattened_rows(kind, shape):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=shape + (CLASSES,)).astype("float32")
    top = CLASSES - 1 if kind == "softmax_eql" else CLASSES
    labels = rng.integers(0, top + 1, size=shape)
    shaped = make_loss(kind, num_classes=CLASSES)
    flat = make_loss(kind, num_classes=CLASSES)
    value, grad = _step(shaped, labels, logits)
    flat_value, flat_grad = _step(flat, labels.reshape(-1), logits.reshape(-1, CLASSES))
    np.testing.assert_allclose(float(value), float(flat_value), rtol=1e-5)
    np.testing.assert_allclose(grad.numpy().reshape(-1, CLASSES), flat_grad.numpy(), atol=1e-7)
    for key in ("positive", "negative", "ratio"):
        np.testing.assert_allclose(shaped.gradient_statistics()[key],
                                   flat.gradient_statistics()[key], rtol=1e-5)


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_sparse_and_dense_labels_agree(kind):
    labels = np.array([0, 1, 2, 3, 1])
    dense = np.eye(CLASSES, dtype="float32")[labels]
    sparse_loss = make_loss(kind, num_classes=CLASSES)
    dense_loss = make_loss(kind, num_classes=CLASSES)
    value, grad = _step(sparse_loss, labels, _logits(5))
    dense_value, dense_grad = _step(dense_loss, dense, _logits(5))
    np.testing.assert_allclose(float(value), float(dense_value), rtol=1e-6)
    np.testing.assert_allclose(grad.numpy(), dense_grad.numpy(), atol=1e-7)
    np.testing.assert_allclose(sparse_loss.gradient_statistics()["positive"],
                               dense_loss.gradient_statistics()["positive"], rtol=1e-6)


def test_objectness_column_is_trained_on_background_and_not_counted():
    loss = keras_eql.SigmoidEQL(objectness=True)
    labels = np.array([0, 3, 3, 1])  # 3 = background with 3 classes
    _, grad = _step(loss, labels, np.zeros((4, 4), "float32"))
    assert loss.num_classes == 3 and loss.gradient_statistics()["positive"].shape == (3,)
    # Objectness column target: 1 on background rows -> gradient (0.5 - 1) / N.
    np.testing.assert_allclose(grad.numpy()[:, 3], [0.125, -0.125, -0.125, 0.125])
