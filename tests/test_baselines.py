"""Tests of the comparison baselines (`keras_eql.baselines`).

Every loss is checked against an independent float64 NumPy implementation of
its paper's formula (loss, and gradient by central differences), in its
limiting cases against Keras' own losses, for the shared label conventions,
serialization, input validation, its counting state (Seesaw, online
logit adjustment) and an XLA-compiled `fit`.
"""

import doctest
import inspect
import json
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_eql import _baseline_math, _seesaw, baselines
from keras_eql.baselines import (
    BalancedSoftmax,
    ClassBalancedLoss,
    EQLv1,
    LogitAdjustedLoss,
    SeesawLoss,
)

TESTS = pathlib.Path(__file__).resolve().parent
GOLDEN_EQL_V1 = TESTS / "golden" / "golden_eql_v1.npz"  # the project's copy of the golden vectors


# ---------------------------------------------------------------- NumPy references (float64)
def _softplus(x):
    return np.logaddexp(0.0, x)


def _bce(z, y):
    return _softplus(z) - y * z


def _log_softmax(a):
    return a - np.logaddexp.reduce(a, axis=-1, keepdims=True)


def _softmax(a):
    return np.exp(_log_softmax(a))


def _one_hot(labels, depth):
    return np.eye(depth)[labels]


def ref_eql_v1(z, labels, rare):
    """Tan et al. 2020, Eq. 7: w = 1 - E_i T_j (1 - y_ij), loss = sum(w * BCE) / N."""
    n, c = z.shape
    y = _one_hot(labels, c + 1)[:, :c]
    foreground = (labels != c).astype(float)[:, None]
    w = 1.0 - foreground * np.asarray(rare, float)[None, :] * (1.0 - y)
    return np.sum(w * _bce(z, y)) / n


def ref_seesaw_rows(z, labels, counts, p, q, eps, score_logits):
    """mmdet's seesaw_ce_loss, written with plain ratios and powers (no log space)."""
    n, c = z.shape
    y = _one_hot(labels, c)
    counts = np.maximum(np.asarray(counts, float), 1.0)
    ratio = counts[None, :] / counts[:, None]
    mitigation = np.where(ratio < 1.0, ratio ** p, 1.0)[labels]
    scores = _softmax(score_logits)
    own = scores[np.arange(n), labels]
    score_ratio = scores / np.maximum(own, eps)[:, None]
    compensation = np.where(score_ratio > 1.0, score_ratio ** q, 1.0)
    adjusted = z + np.log(mitigation * compensation) * (1.0 - y)
    return -_log_softmax(adjusted)[np.arange(n), labels]


def ref_seesaw(z, labels, counts, p=0.8, q=2.0, eps=1e-2, objectness=False, score_logits=None):
    """Mean over rows; with objectness, mmdet's (sum obj CE + sum_fg seesaw) / N."""
    score_logits = z if score_logits is None else score_logits
    if not objectness:
        return np.mean(ref_seesaw_rows(z, labels, counts, p, q, eps, score_logits))
    c = z.shape[1] - 2
    foreground = labels < c
    objectness_ce = -_log_softmax(z[:, c:])[np.arange(len(labels)), (~foreground).astype(int)]
    seesaw = ref_seesaw_rows(z[foreground, :c], labels[foreground], counts, p, q, eps,
                             score_logits[foreground, :c])
    return (objectness_ce.sum() + seesaw.sum()) / len(labels)


def ref_logit_adjusted(z, labels, priors, tau):
    """Menon et al. 2021, Eq. 10, as written: -log(pi_y^tau e^z_y / sum_j pi_j^tau e^z_j)."""
    weighted = np.asarray(priors, float) ** tau * np.exp(z)
    return np.mean(-np.log(weighted[np.arange(len(labels)), labels] / weighted.sum(-1)))


def ref_balanced_softmax(z, labels, counts):
    """Ren et al. 2020, Eq. 4: -log(n_y e^z_y / sum_j n_j e^z_j)."""
    weighted = np.asarray(counts, float) * np.exp(z)
    return np.mean(-np.log(weighted[np.arange(len(labels)), labels] / weighted.sum(-1)))


def ref_class_balanced(z, labels, counts, beta, base, gamma=2.0):
    """Cui et al. 2019, Eq. 5-7, with the weights normalised to sum to C."""
    n, c = z.shape
    counts = np.asarray(counts, float)
    w = (1.0 - beta) / (1.0 - beta ** counts)
    w = w / w.sum() * c
    row_w = np.append(w, 1.0)[labels]  # label C (background) has weight 1
    if base == "softmax":
        per_row = -_log_softmax(z)[np.arange(n), labels]
    else:
        y = _one_hot(labels, c + 1)[:, :c]
        probability = 1.0 / (1.0 + np.exp(-z))
        p_t = np.where(y > 0, probability, 1.0 - probability)
        focal = (1.0 - p_t) ** (gamma if base == "focal" else 0.0)
        per_row = np.sum(-focal * np.log(p_t), axis=-1)
    return np.mean(row_w * per_row)


def numeric_gradient(f, z, h=1e-6):
    grad = np.zeros_like(z)
    for index in np.ndindex(*z.shape):
        up, down = z.copy(), z.copy()
        up[index] += h
        down[index] -= h
        grad[index] = (f(up) - f(down)) / (2 * h)
    return grad


def tf_loss_and_gradient(loss, labels, z, **kwargs):
    logits = tf.constant(z, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        value = loss(labels, logits, **kwargs)
    return value.numpy(), tape.gradient(value, logits).numpy()


def assert_matches(loss, labels, z, reference, rtol=1e-5):
    """Loss within rtol and gradient within 1e-5 * max|g| of the float64 reference."""
    value, grad = tf_loss_and_gradient(loss, labels, z)
    expected = reference(z.astype(np.float64))
    expected_grad = numeric_gradient(reference, z.astype(np.float64))
    np.testing.assert_allclose(value, expected, rtol=rtol)
    np.testing.assert_allclose(grad, expected_grad, rtol=0, atol=1e-5 * np.abs(expected_grad).max())


def random_problem(seed, n=16, c=5, background=False, columns=None):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c + 1 if background else c, size=n)
    z = rng.normal(0.0, 2.0, size=(n, columns or c)).astype(np.float32)
    return labels, z


# ---------------------------------------------------------------- paper formulas
@pytest.mark.parametrize("seed", [0, 1])
def test_eql_v1_matches_formula(seed):
    labels, z = random_problem(seed, background=True)
    rare = np.array([False, True, False, True, True])
    assert_matches(EQLv1(rare_mask=rare), labels, z, lambda zz: ref_eql_v1(zz, labels, rare))


def test_eql_v1_rare_mask_from_frequencies():
    loss = EQLv1(class_frequencies=[0.3, 0.0011, 0.002, 0.0], frequency_threshold=0.0015)
    np.testing.assert_array_equal(loss.rare_classes(), [False, True, False, True])


@pytest.mark.parametrize("p,q", [(0.8, 2.0), (1.5, 0.5), (0.0, 2.0), (0.8, 0.0)])
def test_seesaw_matches_formula(p, q):
    labels, z = random_problem(3, c=6)
    counts = np.array([1000.0, 300.0, 50.0, 10.0, 2.0, 0.0])
    loss = SeesawLoss(num_classes=6, p=p, q=q, update_counts=False)
    loss.counts.assign(counts)
    # The loss adds the batch's own counts (as mmdet); the compensation factor
    # uses scores without gradient: freeze them at z.
    used = counts + np.bincount(labels, minlength=6)
    assert_matches(loss, labels, z,
                   lambda zz: ref_seesaw(zz, labels, used, p, q, score_logits=z.astype(np.float64)))


def test_seesaw_objectness_matches_mmdet_layout():
    labels, z = random_problem(4, c=5, background=True, columns=7)
    counts = np.array([500.0, 40.0, 40.0, 3.0, 1.0])
    loss = SeesawLoss(num_classes=5, objectness=True, update_counts=False)
    loss.counts.assign(counts)
    used = counts + np.bincount(labels[labels < 5], minlength=5)
    assert_matches(loss, labels, z, lambda zz: ref_seesaw(
        zz, labels, used, objectness=True, score_logits=z.astype(np.float64)))


def test_seesaw_steps_use_counts_with_their_batch_and_commit_in_backward():
    rng = np.random.default_rng(5)
    loss = SeesawLoss()
    seen = np.zeros(4)
    for _ in range(3):
        labels = rng.choice(4, size=12, p=[0.6, 0.25, 0.1, 0.05])
        z = rng.normal(0.0, 2.0, size=(12, 4)).astype(np.float32)
        value, grad = tf_loss_and_gradient(loss, labels, z)
        frozen = z.astype(np.float64)
        used = seen + np.bincount(labels, minlength=4)
        reference = lambda zz: ref_seesaw(zz, labels, used, score_logits=frozen)  # noqa: E731
        np.testing.assert_allclose(value, reference(frozen), rtol=1e-5)
        expected_grad = numeric_gradient(reference, frozen)
        np.testing.assert_allclose(grad, expected_grad, atol=1e-5 * np.abs(expected_grad).max())
        seen = used
        np.testing.assert_array_equal(loss.sample_counts(), seen)


@pytest.mark.parametrize("tau", [1.0, 0.5, 2.0])
def test_logit_adjusted_matches_formula(tau):
    labels, z = random_problem(6)
    priors = np.array([0.5, 0.3, 0.1, 0.07, 0.03])
    assert_matches(LogitAdjustedLoss(class_priors=priors, tau=tau), labels, z,
                   lambda zz: ref_logit_adjusted(zz, labels, priors, tau))


def test_logit_adjusted_online_counts():
    rng = np.random.default_rng(7)
    loss = LogitAdjustedLoss(tau=1.5)
    seen = np.zeros(5)
    for _ in range(3):
        labels = rng.choice(5, size=16, p=[0.5, 0.2, 0.15, 0.1, 0.05])
        z = rng.normal(0.0, 2.0, size=(16, 5)).astype(np.float32)
        priors = np.maximum(seen, 1.0)  # unseen classes count as one sample
        assert_matches(loss, labels, z, lambda zz: ref_logit_adjusted(zz, labels, priors, 1.5))
        # assert_matches took one gradient: exactly one step's counts were added.
        seen += np.bincount(labels, minlength=5)
        np.testing.assert_array_equal(loss.sample_counts(), seen)


def test_balanced_softmax_matches_formula():
    labels, z = random_problem(8)
    counts = np.array([400, 120, 30, 8, 1])
    assert_matches(BalancedSoftmax(class_counts=counts), labels, z,
                   lambda zz: ref_balanced_softmax(zz, labels, counts))


@pytest.mark.parametrize("base", ["softmax", "sigmoid", "focal"])
@pytest.mark.parametrize("beta", [0.9, 0.999])
def test_class_balanced_matches_formula(base, beta):
    labels, z = random_problem(9, background=base != "softmax")
    counts = np.array([5000, 800, 120, 20, 3])
    loss = ClassBalancedLoss(counts, beta=beta, base=base, gamma=1.5)
    assert_matches(loss, labels, z, lambda zz: ref_class_balanced(zz, labels, counts, beta, base, 1.5))


def test_logit_adjust_is_post_hoc_subtraction():
    z = np.random.default_rng(10).normal(size=(4, 3)).astype(np.float32)
    priors = np.array([0.7, 0.2, 0.1])
    adjusted = baselines.logit_adjust(tf.constant(z), class_priors=priors, tau=0.5)
    np.testing.assert_allclose(adjusted.numpy(), z - 0.5 * np.log(priors), rtol=1e-6)


def test_seesaw_scores_layout():
    z = np.random.default_rng(11).normal(size=(3, 6)).astype(np.float32)
    scores = baselines.seesaw_scores(tf.constant(z)).numpy()
    objectness = _softmax(z[:, 4:].astype(np.float64))
    expected = np.concatenate([_softmax(z[:, :4].astype(np.float64)) * objectness[:, :1],
                               objectness[:, 1:]], axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    np.testing.assert_allclose(scores.sum(-1), 1.0, rtol=1e-5)


# ---------------------------------------------------------------- limiting cases
def keras_sparse_ce(labels, z):
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, z).numpy()


def test_seesaw_with_equal_counts_and_no_compensation_is_cross_entropy():
    labels, z = random_problem(12, c=4, n=16)
    loss = SeesawLoss(num_classes=4, q=0.0)
    loss.counts.assign(20.0 - np.bincount(labels, minlength=4))  # 20 each with the batch
    np.testing.assert_allclose(loss(labels, z).numpy(), keras_sparse_ce(labels, z), rtol=1e-6)


def test_seesaw_with_equal_counts_is_cross_entropy_where_the_target_leads():
    labels, z = random_problem(13, c=4, n=16)
    z[np.arange(16), labels] += 10.0  # the compensation factor is 1 when sigma_y is the largest
    loss = SeesawLoss(num_classes=4)
    loss.counts.assign(20.0 - np.bincount(labels, minlength=4))  # 20 each with the batch
    np.testing.assert_allclose(loss(labels, z).numpy(), keras_sparse_ce(labels, z), rtol=1e-6)


def test_logit_adjusted_with_uniform_priors_is_cross_entropy():
    labels, z = random_problem(14)
    for loss in (LogitAdjustedLoss(class_priors=[0.2] * 5), LogitAdjustedLoss(class_priors=[9, 1, 3, 2, 1], tau=0.0),
                 BalancedSoftmax(class_counts=[40] * 5)):
        np.testing.assert_allclose(loss(labels, z).numpy(), keras_sparse_ce(labels, z), rtol=1e-6)


def test_online_logit_adjustment_starts_as_cross_entropy():
    labels, z = random_problem(15)
    for loss in (LogitAdjustedLoss(), BalancedSoftmax()):
        np.testing.assert_allclose(loss(labels, z).numpy(), keras_sparse_ce(labels, z), rtol=1e-6)
    # Seesaw counts its first batch before the loss (mmdet): step 0 mitigates.
    assert np.bincount(labels).min() < np.bincount(labels).max()
    assert SeesawLoss(q=0.0)(labels, z).numpy() < keras_sparse_ce(labels, z)


@pytest.mark.parametrize("base", ["softmax", "sigmoid", "focal"])
def test_class_balanced_with_beta_zero_is_its_base_loss(base):
    labels, z = random_problem(16, background=base != "softmax")
    loss = ClassBalancedLoss([1000, 100, 10, 5, 1], beta=0.0, base=base, gamma=2.0)
    if base == "softmax":
        expected = keras_sparse_ce(labels, z)
    else:
        y = _one_hot(labels, 6)[:, :5]
        plain = (keras.losses.BinaryCrossentropy(from_logits=True) if base == "sigmoid" else
                 keras.losses.BinaryFocalCrossentropy(from_logits=True, gamma=2.0))
        expected = 5 * plain(y, z).numpy()  # Keras averages over the classes, CB sums
    np.testing.assert_allclose(loss(labels, z).numpy(), expected, rtol=1e-5)


def test_eql_v1_without_rare_classes_is_summed_bce():
    labels, z = random_problem(17, background=True)
    y = _one_hot(labels, 6)[:, :5]
    expected = 5 * keras.losses.BinaryCrossentropy(from_logits=True)(y, z).numpy()
    np.testing.assert_allclose(EQLv1(rare_mask=[False] * 5)(labels, z).numpy(), expected, rtol=1e-5)


# ---------------------------------------------------------------- golden parity
def test_eql_v1_matches_golden_vectors():
    golden = np.load(GOLDEN_EQL_V1)
    assert json.loads(str(golden["meta"]))["loss"] == "eql_v1"
    loss = EQLv1(rare_mask=golden["rare_mask"])
    for step in range(golden["loss"].shape[0]):
        value, grad = tf_loss_and_gradient(loss, golden["labels"][step], golden["logits"][step])
        expected_grad = golden["grad"][step]
        np.testing.assert_allclose(value, golden["loss"][step], rtol=1e-5)
        np.testing.assert_allclose(grad, expected_grad, rtol=0, atol=1e-5 * np.abs(expected_grad).max())


# ---------------------------------------------------------------- shared conventions
# (factory, sigmoid-style layout with label C = background, number of extra columns)
LOSSES = {
    "eql_v1": (lambda: EQLv1(rare_mask=[0, 1, 0, 1, 1], ignore_class=-1), True, 0),
    "seesaw": (lambda: SeesawLoss(ignore_class=-1), False, 0),
    "seesaw_objectness": (lambda: SeesawLoss(objectness=True, ignore_class=-1), True, 2),
    "logit_adjusted": (lambda: LogitAdjustedLoss(class_priors=[5, 4, 3, 2, 1], ignore_class=-1), False, 0),
    "logit_adjusted_online": (lambda: LogitAdjustedLoss(ignore_class=-1), False, 0),
    "balanced_softmax": (lambda: BalancedSoftmax(class_counts=[5, 4, 3, 2, 1], ignore_class=-1), False, 0),
    "class_balanced_softmax": (lambda: ClassBalancedLoss([9, 5, 3, 2, 1], ignore_class=-1), False, 0),
    "class_balanced_sigmoid": (lambda: ClassBalancedLoss([9, 5, 3, 2, 1], base="sigmoid", ignore_class=-1), True, 0),
    "class_balanced_focal": (lambda: ClassBalancedLoss([9, 5, 3, 2, 1], base="focal", ignore_class=-1), True, 0),
}


def dense_targets(labels, extra):
    """Dense targets of the logits' shape for labels 0..5 (5 = background)."""
    y = _one_hot(labels, 6)[:, :5]
    if extra == 2:
        background = (labels == 5).astype(float)[:, None]
        y = np.concatenate([y, 1.0 - background, background], axis=1)
    return y.astype(np.float32)


@pytest.mark.parametrize("key", sorted(LOSSES))
def test_label_conventions_reductions_and_config(key):
    factory, background, extra = LOSSES[key]
    labels, z = random_problem(20, background=background, columns=5 + extra)
    sparse = factory()(labels, z).numpy()

    # Sparse ids, ids with a trailing axis of 1 and dense targets agree.
    np.testing.assert_allclose(factory()(labels[:, None], z).numpy(), sparse, rtol=1e-6)
    np.testing.assert_allclose(factory()(dense_targets(labels, extra), z).numpy(), sparse, rtol=1e-6)

    # Ignored rows leave the loss (Keras mask semantics: mean over kept rows)
    # and get a zero gradient, even with NaN logits.
    ignored = np.arange(16) % 3 == 0
    poisoned = np.where(ignored[:, None], np.nan, z).astype(np.float32)
    value, grad = tf_loss_and_gradient(factory(), np.where(ignored, -1, labels), poisoned)
    kept, kept_grad = tf_loss_and_gradient(factory(), labels[~ignored], z[~ignored])
    np.testing.assert_allclose(value, kept, rtol=1e-6)
    np.testing.assert_array_equal(grad[ignored], 0.0)
    np.testing.assert_allclose(grad[~ignored], kept_grad, rtol=1e-5, atol=1e-8)

    # Reductions and sample weights act on the per-row losses.
    rows = factory()
    rows.reduction = "none"
    per_row = rows(labels, z).numpy()
    assert per_row.shape == (16,)
    assert np.all(per_row > 0)
    np.testing.assert_allclose(per_row.mean(), sparse, rtol=1e-6)
    weights = np.random.default_rng(23).uniform(0.0, 2.0, size=16).astype(np.float32)
    summed = factory()
    summed.reduction = "sum"
    np.testing.assert_allclose(summed(labels, z, sample_weight=weights).numpy(),
                               np.sum(weights * per_row), rtol=1e-5)
    np.testing.assert_allclose(factory()(labels, z, sample_weight=weights).numpy(),
                               np.mean(weights * per_row), rtol=1e-5)

    # The config mirrors the constructor one to one and round-trips.
    loss = factory()
    config = loss.get_config()
    assert set(config) == set(inspect.signature(type(loss).__init__).parameters) - {"self"}
    assert config["dtype"] == "float32"
    json.dumps(config)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(clone) is type(loss)
    assert clone.get_config() == config
    np.testing.assert_allclose(clone(labels, z).numpy(), sparse, rtol=1e-6)


def test_dtype_is_kept_in_config():
    loss = SeesawLoss(dtype="float64", p=1.0)
    assert SeesawLoss.from_config(loss.get_config()).get_config()["dtype"] == "float64"
    assert SeesawLoss.from_config(loss.get_config()).p == 1.0


# ---------------------------------------------------------------- validation
BAD_ARGUMENTS = [
    (lambda: EQLv1(), "EQLv1: give exactly one of `rare_mask`"),
    (lambda: EQLv1(rare_mask=[0, 1], class_frequencies=[0.1, 0.2]), "EQLv1: give exactly one"),
    (lambda: EQLv1(rare_mask=[0, 2]), r"EQLv1: `rare_mask` must be .* got \[0, 2\]"),
    (lambda: EQLv1(class_frequencies=[0.1, 30.0]), "EQLv1: .*`class_frequencies`.*entry 1 is 30.0"),
    (lambda: EQLv1(rare_mask=[1], frequency_threshold=-1), "EQLv1: `frequency_threshold` .* got -1"),
    (lambda: SeesawLoss(p=-0.5), "SeesawLoss: `p` must be in .* got -0.5"),
    (lambda: SeesawLoss(eps=0.0), "SeesawLoss: `eps` must be in .* got 0.0"),
    (lambda: SeesawLoss(num_classes=0), "SeesawLoss: `num_classes` must be a positive integer, got 0"),
    (lambda: SeesawLoss(ignore_class="x"), "SeesawLoss: `ignore_class` must be an integer or None, got 'x'"),
    (lambda: LogitAdjustedLoss(class_priors=[0.5, 0.0]), "LogitAdjustedLoss: .*entry 1 is 0.0"),
    (lambda: LogitAdjustedLoss(class_priors=[[0.5, 0.5]]), r"LogitAdjustedLoss: `class_priors` .* shape \(1, 2\)"),
    (lambda: LogitAdjustedLoss(tau="big"), "LogitAdjustedLoss: `tau` must be a number, got 'big'"),
    (lambda: LogitAdjustedLoss(class_priors=[1, 2], num_classes=3), "LogitAdjustedLoss: num_classes=3 but 2"),
    (lambda: BalancedSoftmax(class_counts=[3, -1]), "BalancedSoftmax: .*entry 1 is -1.0"),
    (lambda: ClassBalancedLoss(), "ClassBalancedLoss: `class_counts` .* is required"),
    (lambda: ClassBalancedLoss([3, 1], beta=1.0), r"ClassBalancedLoss: `beta` must be a number in \[0, 1\), got 1.0"),
    (lambda: ClassBalancedLoss([3, 1], base="hinge"), "ClassBalancedLoss: unknown base='hinge'"),
    (lambda: ClassBalancedLoss([3, np.nan]), "ClassBalancedLoss: .*entry 1 is nan"),
    (lambda: ClassBalancedLoss([3, 1], gamma=-2), "ClassBalancedLoss: `gamma` must be in .* got -2"),
    (lambda: baselines.logit_adjust(tf.zeros([1, 3]), class_priors=[0.5, 0.5]),
     "logit_adjust: 2 class_priors for logits with 3 columns"),
    (lambda: baselines.class_balanced_weights([1, 2], beta=-0.1), "class_balanced_weights: `beta`"),
]


def test_bad_arguments_raise_naming_loss_and_value():
    for build, message in BAD_ARGUMENTS:
        with pytest.raises(ValueError, match=message):
            build()


BAD_INPUTS = [  # (loss, labels, logits, expected message)
    (lambda: SeesawLoss(), [0, 4], np.zeros((2, 4)),
     "SeesawLoss: label 4.0 is out of range; expected an integer in 0..3"),
    (lambda: SeesawLoss(objectness=True), [0, 5], np.zeros((2, 6)),
     "SeesawLoss: label 5.0 is out of range.*0..4 .4 = background"),
    (lambda: LogitAdjustedLoss(class_priors=[1, 1, 1]), [0], np.zeros((1, 4)),
     "LogitAdjustedLoss 'logit_adjusted_loss': logits have 4 class columns but the loss has 3"),
    (lambda: EQLv1(rare_mask=[0, 1]), [0], np.zeros((1, 3)),
     "EQLv1 'eql_v1': logits have 3 columns but the rare-class mask has 2"),
    (lambda: ClassBalancedLoss([2, 1]), [0], np.zeros((1, 3)),
     "ClassBalancedLoss 'class_balanced_loss': logits have 3 columns but 2"),
    (lambda: ClassBalancedLoss([2, 1]), [1.5], np.zeros((1, 2)),
     "ClassBalancedLoss: label 1.5 is out of range"),
    (lambda: EQLv1(rare_mask=[0, 1]), np.array([[0.5, 0.0]]), np.zeros((1, 2)),
     "EQLv1: dense target 0.5 is not 0 or 1"),
    (lambda: SeesawLoss(), np.array([[1.0, 1.0, 0.0]]), np.zeros((1, 3)),
     "SeesawLoss: a dense target row has 2.0 positives"),
    (lambda: SeesawLoss(objectness=True), np.array([[1.0, 0.0, 0.0, 1.0]]), np.zeros((1, 4)),
     "SeesawLoss: a dense target row has 1.0 class positives or an objectness pair that disagrees"),
    (lambda: BalancedSoftmax(), [0], np.zeros((1, 2), np.int32),
     "BalancedSoftmax: logits .* must be a floating-point tensor"),
]


def test_bad_inputs_raise_naming_loss_and_value():
    for make_loss, labels, logits, message in BAD_INPUTS:
        with pytest.raises(ValueError, match=message):
            make_loss()(np.asarray(labels), logits if logits.dtype == np.int32 else logits.astype(np.float32))


# ---------------------------------------------------------------- counts as state
def tiny_model(columns, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(columns)])


def training_data(labels_high, n=48, seed=1, ignore=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = rng.integers(0, labels_high, size=n)
    if ignore:
        y[::5] = -1
    return x, y


@pytest.mark.parametrize("key", ["seesaw_objectness", "logit_adjusted_online"])
def test_counts_move_only_in_training_steps(key):
    factory, background, extra = LOSSES[key]
    loss = factory()
    x, y = training_data(6 if background else 5, ignore=True)
    model = tiny_model(5 + extra)
    model.compile(keras.optimizers.SGD(0.1), loss=loss, jit_compile=False)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    expected = 2 * np.bincount(y[(y >= 0) & (y < 5)], minlength=5)  # no ignored, no background rows
    np.testing.assert_array_equal(loss.sample_counts(), expected)
    model.evaluate(x, y, batch_size=16, verbose=0)
    model.predict(x, verbose=0)
    loss(y, model(x))
    np.testing.assert_array_equal(loss.sample_counts(), expected)
    frozen = factory()
    frozen.update_counts = False
    model.compile(keras.optimizers.SGD(0.1), loss=frozen, jit_compile=False)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    np.testing.assert_array_equal(frozen.sample_counts(), 0.0)
    loss.reset_counts()
    np.testing.assert_array_equal(loss.sample_counts(), 0.0)


@pytest.mark.parametrize("key", ["seesaw_objectness", "logit_adjusted_online"])
def test_counts_are_saved_and_restored(key, tmp_path):
    factory, background, extra = LOSSES[key]
    x, y = training_data(6 if background else 5)
    model = tiny_model(5 + extra)
    loss = factory()
    model.compile(keras.optimizers.SGD(0.1), loss=loss)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    expected = loss.sample_counts()
    assert expected.sum() > 0

    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(loaded.loss.sample_counts(), expected)
    np.testing.assert_allclose(loaded.loss(y, loaded(x)).numpy(), loss(y, model(x)).numpy(), rtol=1e-6)

    model.save_weights(tmp_path / "model.weights.h5")
    fresh = tiny_model(5 + extra, seed=3)
    fresh.compile(keras.optimizers.SGD(0.1), loss=factory())  # lazy: counts built from the file
    fresh.load_weights(tmp_path / "model.weights.h5")
    np.testing.assert_array_equal(fresh.loss.sample_counts(), expected)

    path = tf.train.Checkpoint(loss=loss).write(str(tmp_path / "checkpoint"))
    restored = type(loss).from_config({**loss.get_config(), "num_classes": 5})
    tf.train.Checkpoint(loss=restored).read(path).assert_consumed()
    np.testing.assert_array_equal(restored.sample_counts(), expected)


def test_counts_are_summed_over_replicas_once_per_step():
    script = TESTS / "_baselines_mirrored.py"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    for name in ("seesaw", "logit_adjusted"):
        run = report[name]
        np.testing.assert_array_equal(run["mirrored_counts"], run["expected_counts"])
        np.testing.assert_array_equal(run["single_counts"], run["expected_counts"])
        assert run["kernel_max_abs_diff"] < 1e-5, run
    assert "created outside the strategy" in report["outside_scope_error"]


# ---------------------------------------------------------------- XLA


@pytest.mark.parametrize("key", sorted(LOSSES))
def test_jit_compiled_fit_matches_eager_loss(key):
    factory, background, extra = LOSSES[key]
    x, y = training_data(6 if background else 5, n=32, ignore=True)
    model = tiny_model(5 + extra)
    eager = factory()(y, model(x)).numpy()  # a plain call moves no state
    loss = factory()
    model.compile(keras.optimizers.SGD(0.0), loss=loss, jit_compile=True)
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0).history["loss"]
    assert np.isfinite(history).all()
    np.testing.assert_allclose(history[0], eager, rtol=1e-5)
    if isinstance(loss, baselines.CountingLoss) and loss.counts is not None:
        np.testing.assert_array_equal(loss.sample_counts(), 2 * np.bincount(y[(y >= 0) & (y < 5)], minlength=5))


# ---------------------------------------------------------------- documentation
@pytest.mark.parametrize("module", [_baseline_math, baselines, _seesaw], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
