"""Bad inputs and edge cases under KERAS_BACKEND=torch.

Static checks (shapes, arguments, dtypes) raise at once, naming the loss, as
under TensorFlow and JAX. Label values are checked as under TensorFlow's
XLA: a bad one gives a NaN loss, a zero gradient and no statistics update;
a non-finite counted logit drops the step from the statistics whole.
"""

import numpy as np
import pytest
import torch

import keras_eql

ROWS, CLASSES = 12, 4


def _step(loss, labels, logits, weights=None):
    """One differentiated call and `backward()`: (loss, gradient w.r.t. the logits)."""
    logits = torch.tensor(np.asarray(logits), requires_grad=True)
    value = loss(labels, logits, weights)
    value.backward()
    return float(value.detach()), logits.grad.float().numpy()


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(ROWS, CLASSES)).astype("float32") * 2
    labels = rng.integers(0, CLASSES + 1, size=ROWS)  # CLASSES = background
    labels[[1, 5]] = -1
    return logits, labels


@pytest.mark.parametrize("cls", [keras_eql.SigmoidEQL, keras_eql.SoftmaxEQL,
                                 keras_eql.EqualizedFocalLoss, keras_eql.EqualizedQualityFocalLoss])
def test_static_errors_name_the_loss(cls):
    name = cls.__name__
    with pytest.raises(ValueError, match=rf"{name}: labels of shape \(3, 2\)"):
        cls(num_classes=CLASSES)(np.zeros((3, 2)), np.zeros((3, CLASSES), "float32"))
    with pytest.raises(ValueError, match=rf"{name}.*logits have 6 columns"):
        cls(num_classes=CLASSES)(np.zeros(3), np.zeros((3, 6), "float32"))
    with pytest.raises(ValueError, match=rf"{name}: `num_classes` must be a positive integer"):
        cls(num_classes=0)
    with pytest.raises(ValueError, match=rf"{name}.*from_logits"):
        cls(from_logits=False)


def test_a_bad_label_gives_a_nan_loss_a_zero_gradient_and_no_update():
    logits, labels = _inputs(seed=3)
    loss = keras_eql.SigmoidEQL(num_classes=CLASSES)
    labels[0] = CLASSES + 3
    value, grad = _step(loss, labels, logits)
    assert np.isnan(value)
    np.testing.assert_array_equal(grad, 0.0)
    assert loss.statistics.step_count() == 0
    assert not loss.gradient_statistics()["positive"].any()


def test_a_non_finite_counted_logit_drops_the_step_whole():
    logits, labels = _inputs(seed=2)
    loss = keras_eql.EqualizedFocalLoss(num_classes=CLASSES)
    _step(loss, labels, logits)
    before = loss.gradient_statistics()
    poisoned = logits.copy()
    poisoned[0, 0] = np.nan
    _step(loss, labels, poisoned)
    after = loss.gradient_statistics()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
    assert loss.statistics.step_count() == 1
    # A NaN logit in an ignored row is not counted: the step is.
    poisoned = logits.copy()
    poisoned[1, 0] = np.nan
    value, grad = _step(loss, labels, poisoned)
    assert np.isfinite(value) and np.isfinite(grad).all()
    assert loss.statistics.step_count() == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("cls", [keras_eql.SigmoidEQL, keras_eql.SoftmaxEQL,
                                 keras_eql.EqualizedFocalLoss,
                                 keras_eql.EqualizedQualityFocalLoss, keras_eql.FocalSigmoidEQL])
def test_extreme_finite_logits_give_a_finite_loss_gradient_and_statistics(cls, dtype):
    values = np.array([-3e4, -100.0, -17.0, 0.0, 17.0, 100.0, 3e4], np.float32)
    logits = torch.tensor(np.stack([np.roll(values, k)[:CLASSES] for k in range(7)]),
                          dtype=dtype, requires_grad=True)
    loss = cls(num_classes=CLASSES)
    value = loss(np.arange(7) % CLASSES, logits)
    value.backward()
    assert np.isfinite(float(value.detach()))
    assert torch.isfinite(logits.grad.float()).all()
    assert loss.statistics.step_count() == 1
    stats = loss.gradient_statistics()
    assert np.isfinite(stats["positive"]).all() and np.isfinite(stats["negative"]).all()
