"""Property-based tests (hypothesis) of the four losses and their statistics.

Random shapes (rank 2 and 3 logits), class counts, logits up to +-1e4,
labels (classes, background, ignored rows), dense targets, sample weights,
reductions and outer loss factors:

* losses and gradients are finite; accumulated sums are finite and >= 0;
  ratios are finite, >= 0, and <= 1 for the clipped losses (EFL, EQFL);
* Softmax-EQL keeps sum(positive) == sum(negative) (every row's target
  gradient equals the sum of its non-target gradients);
* after k steps the statistics equal the sum (or the decayed sum) of k
  single-step increments computed independently from `tape.gradient` of the
  same loss with frozen statistics, outer factors divided out.

Examples are derandomized so that CI is reproducible; set
KERAS_EQL_HYPOTHESIS_SEEDED=0 to explore new examples locally.
"""

import os

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_eql

NAMES = ("SigmoidEQL", "SoftmaxEQL", "EqualizedFocalLoss", "EqualizedQualityFocalLoss")
CLIPPED = ("EqualizedFocalLoss", "EqualizedQualityFocalLoss")

SETTINGS = dict(
    deadline=None,
    database=None,
    derandomize=os.environ.get("KERAS_EQL_HYPOTHESIS_SEEDED", "1") != "0",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

EXTREMES = st.sampled_from([-1e4, 1e4, -88.0, 88.0, 0.0, -30.0, 30.0])


@st.composite
def problems(draw, names=NAMES):
    """A loss configuration and a few batches for it."""
    name = draw(st.sampled_from(names))
    num_classes = draw(st.integers(1, 7))
    objectness = name == "SigmoidEQL" and draw(st.booleans())
    width = num_classes + (1 if objectness else 0)
    prefix = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=2)))
    reduction = draw(st.sampled_from(["sum_over_batch_size", "sum", "mean"]))
    kwargs = {"num_classes": num_classes, "reduction": reduction}
    if name == "SigmoidEQL":
        kwargs.update(objectness=objectness,
                      mapping=draw(st.sampled_from(["sigmoid", "linear", "square", "sqrt"])))
    if name == "SoftmaxEQL":
        kwargs.update(indicator=draw(st.sampled_from(["positive", "negative", "pos_and_neg"])),
                      tau=draw(st.floats(0.0, 3.0)), ignore_class=-1)
    if name in CLIPPED:
        kwargs.update(scale=draw(st.floats(0.0, 8.0)), gamma=draw(st.floats(0.5, 4.0)))
        if reduction == "sum" and draw(st.booleans()):
            kwargs.update(normalize_by_positives=True)
    if draw(st.booleans()):
        kwargs["decay"] = draw(st.floats(0.5, 1.0))
    steps = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(steps):
        logits = rng.normal(scale=draw(st.sampled_from([1.0, 10.0, 1e3])), size=prefix + (width,))
        for _ in range(draw(st.integers(0, 3))):  # some extreme entries
            index = tuple(rng.integers(0, n) for n in logits.shape)
            logits[index] = draw(EXTREMES)
        top = num_classes - 1 if name == "SoftmaxEQL" else num_classes  # C = background
        labels = rng.integers(0, top + 1, size=prefix)
        labels[rng.random(prefix) < draw(st.sampled_from([0.0, 0.3, 1.0]))] = -1  # ignored
        if name == "EqualizedQualityFocalLoss" and draw(st.booleans()):
            # dense IoU-quality targets in [0, 1]
            targets = np.where(rng.random(prefix + (num_classes,)) < 0.3,
                               rng.uniform(0.0, 1.0, prefix + (num_classes,)), 0.0)
            targets = targets.astype("float32")
        else:
            targets = labels.astype("int32")
        weight = None
        if draw(st.booleans()):
            weight = rng.uniform(0.0, 5.0, size=prefix).astype("float32")
            weight[rng.random(prefix) < 0.2] = 0.0
        outer = draw(st.sampled_from([1.0, 0.25, 3.0, 1024.0]))
        batches.append((targets, logits.astype("float32"), weight, outer))
    return name, kwargs, batches


def _positive_mask(targets, width, num_classes):
    """0/1 mask of positives over the C class columns, as the losses define it."""
    targets = np.asarray(targets)
    if targets.dtype.kind == "f" and targets.shape[-1:] == (num_classes,) and targets.ndim > 1:
        return (targets > 0).astype("float32")
    hot = np.zeros(targets.shape + (num_classes + 1,), "float32")
    valid = (targets >= 0) & (targets <= num_classes)
    np.put_along_axis(hot, np.where(valid, targets, num_classes)[..., None], 1.0, -1)
    return hot[..., :num_classes]


def _train_step(loss, targets, logits, weight, outer):
    logits = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        value = loss(targets, logits, weight)
        total = outer * tf.reduce_sum(value)
    return value.numpy(), tape.gradient(total, logits).numpy()


@pytest.mark.timeout(300)
@settings(max_examples=40, **SETTINGS)
@given(problems())
def test_finite_losses_gradients_and_statistics(problem):
    name, kwargs, batches = problem
    loss = getattr(keras_eql, name)(**kwargs)
    for targets, logits, weight, outer in batches:
        value, gradient = _train_step(loss, targets, logits, weight, outer)
        assert np.isfinite(value).all(), (name, value)
        assert np.isfinite(gradient).all(), (name, gradient)
        assert (value >= 0).all(), (name, value)
        statistics = loss.gradient_statistics()
        for key in ("positive", "negative", "ratio"):
            assert np.isfinite(statistics[key]).all(), (key, statistics[key])
            assert (statistics[key] >= 0).all(), (key, statistics[key])
        if name in CLIPPED:
            assert (statistics["ratio"] <= 1).all(), statistics["ratio"]
    assert loss.statistics.steps.numpy() == len(batches)


@pytest.mark.timeout(300)
@settings(max_examples=25, **SETTINGS)
@given(problems(names=("SoftmaxEQL",)))
def test_softmax_eql_positive_and_negative_sums_are_equal(problem):
    name, kwargs, batches = problem
    kwargs.pop("decay", None)  # the identity holds for the plain sums
    loss = keras_eql.SoftmaxEQL(**kwargs)
    for targets, logits, weight, outer in batches:
        _train_step(loss, targets, logits, weight, outer)
        statistics = loss.gradient_statistics()
        total = statistics["positive"].sum()
        # p_y - 1 is rounded at float32 epsilon per row: absolute slack.
        rows = np.prod(np.shape(targets))
        np.testing.assert_allclose(statistics["negative"].sum(), total,
                                   rtol=1e-4, atol=1e-6 * max(rows, 1) * 10)


@pytest.mark.timeout(300)
@settings(max_examples=30, **SETTINGS)
@given(problems())
def test_statistics_are_the_sum_of_single_step_increments(problem):
    name, kwargs, batches = problem
    loss = getattr(keras_eql, name)(**kwargs)
    frozen_kwargs = dict(kwargs, update_statistics=False)
    if name == "SigmoidEQL":
        # Per-sample statistics: the gradient of the weighted plain sum.
        frozen_kwargs["reduction"] = "sum"
    frozen = getattr(keras_eql, name)(**frozen_kwargs)
    num_classes = kwargs["num_classes"]
    decay = kwargs.get("decay") or 1.0
    expected_positive = np.zeros(num_classes, np.float64)
    expected_negative = np.zeros(num_classes, np.float64)
    for targets, logits, weight, outer in batches:
        # The increment, independently: d(loss)/d(logits) of the same loss with
        # the statistics frozen at their current value, no outer factor (for
        # Sigmoid-EQL without the reduction's normaliser).
        state = loss.statistics
        frozen.statistics.assign(state.positive.numpy(), state.negative.numpy(),
                                 state.steps.numpy())
        _, gradient = _train_step(frozen, targets, logits, weight, 1.0)
        magnitude = np.abs(gradient[..., :num_classes]).reshape(-1, num_classes)
        mask = _positive_mask(targets, logits.shape[-1], num_classes).reshape(-1, num_classes)
        expected_positive = decay * expected_positive + (magnitude * mask).sum(0)
        expected_negative = decay * expected_negative + (magnitude * (1 - mask)).sum(0)
        # The loss itself, trained with an outer factor (loss weight / scale).
        _train_step(loss, targets, logits, weight, outer)
        statistics = loss.gradient_statistics()
        np.testing.assert_allclose(statistics["positive"], expected_positive, rtol=2e-5, atol=1e-7)
        np.testing.assert_allclose(statistics["negative"], expected_negative, rtol=2e-5, atol=1e-7)
    assert loss.statistics.steps.numpy() == len(batches)


@pytest.mark.parametrize("gamma", [0.5, 0.9])
def test_eqfl_gradient_is_finite_where_the_quality_target_is_met(gamma):
    # Found by the properties above: |y' - p|**gamma_j has an infinite slope
    # at y' == p when gamma_j < 1 (a saturated logit with IoU target 1, or
    # p == y' exactly). `gamma` only has to be > 0, so this is reachable.
    loss = keras_eql.EqualizedQualityFocalLoss(num_classes=2, gamma=gamma)
    targets = np.array([[1.0, 0.0], [0.5, 0.0]], "float32")
    logits = np.array([[20.0, -3.0], [0.0, 1.0]], "float32")  # p = 1 and p = 0.5
    value, gradient = _train_step(loss, targets, logits, None, 1.0)
    assert np.isfinite(value).all()
    assert np.isfinite(gradient).all(), gradient
    assert loss.statistics.steps.numpy() == 1.0
