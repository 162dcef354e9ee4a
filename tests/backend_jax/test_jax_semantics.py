"""What the JAX statistics mean, checked against JAX's own gradient of the loss.

SoftmaxEQL, EFL and EQFL accumulate the gradient of the loss's output
w.r.t. the logits (sample weights and the reduction's mask-aware normaliser
in); Sigmoid-EQL and FL+EQL the per-sample gradients (normaliser out). A
step with a non-finite counted logit or a bad label is dropped whole; a
step without counted rows leaves the ratio.
"""

import jax
import numpy as np
import pytest

import keras_eql

ROWS, CLASSES = 12, 4


def _step(loss, labels, logits, weights=None):
    """One differentiated step; returns (loss, gradient w.r.t. the logits, increments)."""
    before = loss.gradient_statistics()
    state = [v.value for v in loss.statistics.variables]
    (value, state), grad = jax.value_and_grad(
        lambda z: loss.stateless_call(state, labels, z, weights), has_aux=True)(logits)
    for variable, new in zip(loss.statistics.variables, state):
        variable.assign(new)
    after = loss.gradient_statistics()
    return (float(value), np.asarray(grad),
            {key: after[key] - before[key] for key in ("positive", "negative")})


def _inputs(seed=0, ignore=True):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(ROWS, CLASSES)).astype("float32") * 2
    labels = rng.integers(0, CLASSES + 1, size=ROWS)  # CLASSES = background
    if ignore:
        labels[[1, 5]] = -1
    weights = rng.uniform(0.2, 2.0, size=ROWS).astype("float32")
    return logits, labels, weights


def _split(grad, positive):
    magnitude = np.abs(grad.astype("float64"))
    return (magnitude * positive).sum(0), (magnitude * ~positive).sum(0)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum"])
@pytest.mark.parametrize("kind", ["efl", "eqfl", "softmax_eql"])
def test_statistics_are_the_gradient_of_the_output(kind, reduction):
    logits, labels, weights = _inputs()
    if kind == "softmax_eql":
        labels = np.where(labels == CLASSES, 0, labels)
        loss = keras_eql.SoftmaxEQL(num_classes=CLASSES, ignore_class=-1, reduction=reduction)
    elif kind == "efl":
        loss = keras_eql.EqualizedFocalLoss(num_classes=CLASSES, reduction=reduction)
    else:
        loss = keras_eql.EqualizedQualityFocalLoss(num_classes=CLASSES, reduction=reduction)
    for step in range(2):  # the second step runs on a ratio the first one moved
        _, grad, increments = _step(loss, labels, logits + step, weights)
        positive = labels[:, None] == np.arange(CLASSES)
        expected_positive, expected_negative = _split(grad, positive)
        # Increments are differences of float32 totals: exact to a few ulp of the total.
        ulps = 4e-7 * max(loss.gradient_statistics()[key].max() for key in ("positive", "negative"))
        np.testing.assert_allclose(increments["positive"], expected_positive, rtol=1e-5, atol=ulps)
        np.testing.assert_allclose(increments["negative"], expected_negative, rtol=1e-5, atol=ulps)
    # The mask-aware denominator: the ignored rows leave sum_over_batch_size's N.
    if reduction == "sum_over_batch_size":
        summed = type(loss)(**{**loss.get_config(), "reduction": "sum"})
        total, _, _ = _step(summed, labels, logits, weights)
        mean, _, _ = _step(type(loss)(**loss.get_config()), labels, logits, weights)
        np.testing.assert_allclose(mean, total / (labels != -1).sum(), rtol=1e-6)


@pytest.mark.parametrize("cls", [keras_eql.SigmoidEQL, keras_eql.FocalSigmoidEQL])
def test_per_sample_statistics_leave_the_normaliser_out(cls):
    logits, labels, weights = _inputs(seed=1)
    by_reduction = {}
    for reduction in ("sum", "sum_over_batch_size"):
        loss = cls(num_classes=CLASSES, reduction=reduction)
        _, grad, increments = _step(loss, labels, logits, weights)
        by_reduction[reduction] = (grad, increments)
    grad, increments = by_reduction["sum"]
    expected_positive, expected_negative = _split(grad, labels[:, None] == np.arange(CLASSES))
    for _, increments in by_reduction.values():
        np.testing.assert_allclose(increments["positive"], expected_positive, rtol=1e-5)
        np.testing.assert_allclose(increments["negative"], expected_negative, rtol=1e-5)


def test_a_non_finite_counted_logit_drops_the_step_whole():
    logits, labels, weights = _inputs(seed=2)
    loss = keras_eql.EqualizedFocalLoss(num_classes=CLASSES)
    _step(loss, labels, logits, weights)
    before = loss.gradient_statistics()
    poisoned = logits.copy()
    poisoned[0, 0] = np.nan
    _step(loss, labels, poisoned, weights)
    after = loss.gradient_statistics()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
    assert loss.statistics.step_count() == 1
    # A NaN logit in an ignored row is not counted: the step is.
    poisoned = logits.copy()
    poisoned[1, 0] = np.nan
    value, grad, _ = _step(loss, labels, poisoned, weights)
    assert np.isfinite(value) and np.isfinite(grad).all()
    assert loss.statistics.step_count() == 2


def test_a_bad_label_gives_a_nan_loss_a_zero_gradient_and_no_update():
    logits, labels, weights = _inputs(seed=3)
    loss = keras_eql.SigmoidEQL(num_classes=CLASSES)
    labels[0] = CLASSES + 3
    value, grad, increments = _step(loss, labels, logits, weights)
    assert np.isnan(value)
    np.testing.assert_array_equal(grad, 0.0)
    assert loss.statistics.step_count() == 0
    np.testing.assert_array_equal(increments["positive"], 0.0)


def test_a_step_without_counted_rows_leaves_the_ratio():
    logits, labels, weights = _inputs(seed=4)
    loss = keras_eql.EqualizedFocalLoss(num_classes=CLASSES)
    _step(loss, labels, logits, weights)
    ratio = loss.gradient_statistics()["ratio"]
    value, grad, _ = _step(loss, np.full(ROWS, -1), logits, weights)
    assert value == 0.0 and not grad.any()
    np.testing.assert_array_equal(loss.gradient_statistics()["ratio"], ratio)


def test_differentiating_outside_a_stateless_step_raises():
    logits, labels, _ = _inputs(seed=5)
    labels = np.minimum(np.maximum(labels, 0), CLASSES - 1)
    loss = keras_eql.SoftmaxEQL(num_classes=CLASSES)
    with pytest.raises(RuntimeError, match="stateless_call"):
        jax.grad(lambda z: loss(labels, z))(logits)
    frozen = keras_eql.SoftmaxEQL(num_classes=CLASSES, update_statistics=False)
    assert np.isfinite(np.asarray(jax.grad(lambda z: frozen(labels, z))(logits))).all()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("cls", [keras_eql.SigmoidEQL, keras_eql.SoftmaxEQL,
                                 keras_eql.EqualizedFocalLoss,
                                 keras_eql.EqualizedQualityFocalLoss, keras_eql.FocalSigmoidEQL])
def test_extreme_finite_logits_give_a_finite_loss_gradient_and_statistics(cls, dtype):
    import jax.numpy as jnp

    values = np.array([-3e4, -100.0, -17.0, 0.0, 17.0, 100.0, 3e4], np.float32)
    logits = jnp.asarray(np.stack([np.roll(values, k)[:CLASSES] for k in range(7)]), dtype)
    labels = np.arange(7) % CLASSES
    loss = cls(num_classes=CLASSES)
    value, grad, _ = _step(loss, labels, logits)
    assert np.isfinite(value)
    assert np.isfinite(np.asarray(grad, np.float32)).all()
    assert loss.statistics.step_count() == 1
    stats = loss.gradient_statistics()
    assert np.isfinite(stats["positive"]).all() and np.isfinite(stats["negative"]).all()
