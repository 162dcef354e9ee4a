"""The fused row losses equal the plain autodiff path.

`keras_eql._fused` computes each loss's gradient analytically and the
statistics' column sums inside the same backward pass. Here they are checked
against autodiff of `keras_eql.functional` (and a float64 NumPy softmax),
the loss classes (which run them) against the same classes on the autodiff
path of `benchmarks/_autodiff_losses.py`, and for finiteness at extreme
logits; `tests/test_golden.py` checks the classes against the golden
vectors. Golden tolerances: loss rtol 1e-5, gradient atol 1e-5 * max|g|,
statistics rtol 1e-5.
"""

import sys

import numpy as np
import pytest
import tensorflow as tf

import keras_eql
from conftest import REPO_ROOT
from keras_eql import _fused, functional

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from _autodiff_losses import AUTODIFF  # noqa: E402

ROWS, CLASSES = 48, 9
RATIO = np.random.default_rng(7).uniform(0.0, 1.0, CLASSES).astype(np.float32)

# name -> (fused, reference on dense targets); hyper-parameters off their defaults.
LOSSES = {
    "sigmoid_eql": (
        lambda t, z, **k: _fused.sigmoid_eql_rows(t, z, ratio=RATIO * 2, gamma=6.0, **k),
        lambda t, z: tf.reduce_sum(functional.sigmoid_eql(t, z, ratio=RATIO * 2, gamma=6.0), -1)),
    "efl": (
        lambda t, z, **k: _fused.equalized_focal_loss_rows(t, z, ratio=RATIO, alpha=0.3, **k),
        lambda t, z: tf.reduce_sum(functional.equalized_focal_loss(t, z, ratio=RATIO, alpha=0.3), -1)),
    "efl_no_alpha": (
        lambda t, z, **k: _fused.equalized_focal_loss_rows(t, z, ratio=RATIO, alpha=None, **k),
        lambda t, z: tf.reduce_sum(functional.equalized_focal_loss(t, z, ratio=RATIO, alpha=None), -1)),
    "eqfl": (
        lambda t, z, **k: _fused.equalized_quality_focal_loss_rows(t, z, ratio=RATIO, scale=4.0, **k),
        lambda t, z: tf.reduce_sum(
            functional.equalized_quality_focal_loss(t, z, ratio=RATIO, scale=4.0), -1)),
    "fl_eql": (
        lambda t, z, **k: _fused.focal_sigmoid_eql_rows(
            t, z, ratio=RATIO * 2, focal_alpha=0.3, gamma=6.0, **k),
        lambda t, z: tf.reduce_sum(functional.focal_sigmoid_eql(
            t, z, ratio=RATIO * 2, focal_alpha=0.3, gamma=6.0), -1)),
    "softmax_eql": (
        lambda t, z, **k: _fused.softmax_eql_rows(t, z, indicator=RATIO * 3, tau=0.7, **k),
        lambda t, z: functional.softmax_eql(t, z, indicator=RATIO * 3, tau=0.7)),
}


def _data(name, layout, seed=0, scale=4.0):
    """(fused targets, dense reference targets, logits, upstream row weights)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, scale, (ROWS, CLASSES)).astype(np.float32)
    softmax = name == "softmax_eql"
    labels = rng.integers(0, CLASSES if softmax else CLASSES + 1, ROWS)  # C = background
    dense = np.eye(CLASSES + 1, dtype=np.float32)[labels][:, :CLASSES]
    if name == "eqfl" and layout == "dense":
        dense *= rng.uniform(0.05, 1.0, (ROWS, 1)).astype(np.float32)
    if layout == "multi":  # several positives per row
        dense = np.maximum(dense, (rng.random((ROWS, CLASSES)) < 0.2).astype(np.float32))
    # Negative and zero upstream gradients too (sample weights, ignored rows).
    upstream = rng.uniform(-1.0, 2.0, ROWS).astype(np.float32)
    upstream[::7] = 0.0
    targets = labels.astype(np.int32) if layout == "sparse" else dense
    return tf.constant(targets), tf.constant(dense), tf.constant(logits), tf.constant(upstream)


def _run(function, targets, logits, upstream, mode, **hooks):
    """Rows, gradient of `sum(rows * upstream)` and whatever the hooks saw."""
    seen = {}

    def collect(key):
        def hook(*values):
            seen[key] = values
            return []
        return hook

    hook_arguments = {k: collect(k) for k in hooks}

    def step(targets, logits, upstream):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            rows = function(targets, logits, **hook_arguments)
            total = tf.reduce_sum(rows * upstream)
        gradient = tape.gradient(total, logits)
        return rows, gradient, seen.get("on_column_sums", ()), seen.get("on_gradient", ())

    if mode != "eager":
        step = tf.function(step, jit_compile=(mode == "jit"))
    rows, gradient, sums, gradients = step(targets, logits, upstream)
    return rows.numpy(), gradient.numpy(), [s.numpy() for s in sums], [g.numpy() for g in gradients]


def _masked_sums(gradient, positive):
    magnitude = np.abs(gradient.astype(np.float64))
    return (magnitude * positive).sum(0), (magnitude * ~positive).sum(0)


CASES = [(name, layout) for name in LOSSES for layout in ("sparse", "dense")]
CASES += [("sigmoid_eql", "multi"), ("efl", "multi"), ("eqfl", "multi")]


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("name,layout", CASES)
def test_fused_equals_autodiff(name, layout, mode):
    fused, reference = LOSSES[name]
    targets, dense, logits, upstream = _data(name, layout)
    rows, gradient, sums, hooked = _run(fused, targets, logits, upstream, mode,
                                        on_column_sums=True, on_gradient=True)
    reference_targets = targets if name == "softmax_eql" else dense
    # Same mode: a dense Softmax-EQL is TF's kernel on both sides, whose XLA
    # and CPU versions differ by more than 1e-5 on small losses.
    expected_rows, expected_gradient, _, _ = _run(reference, reference_targets, logits, upstream, mode)
    if name == "softmax_eql" and layout == "sparse":
        # Not TF's kernel (good to ~1e-5 relative only, worse on tiny losses):
        # float64.
        adjusted = logits.numpy().astype(np.float64) + 0.7 * np.log(np.maximum(RATIO * 3.0, 1e-4))
        top = adjusted.max(1, keepdims=True)
        log_normalizer = np.log(np.exp(adjusted - top).sum(1)) + top[:, 0]
        expected_rows = log_normalizer - (adjusted * dense.numpy()).sum(1)
    np.testing.assert_allclose(rows, expected_rows, rtol=1e-5)
    scale = np.abs(expected_gradient).max()
    np.testing.assert_allclose(gradient, expected_gradient, rtol=0, atol=1e-5 * scale)
    np.testing.assert_array_equal(hooked[0], gradient)
    expected_positive, expected_negative = _masked_sums(expected_gradient, dense.numpy() > 0)
    np.testing.assert_allclose(sums[0], expected_positive, rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(sums[1], expected_negative, rtol=1e-5, atol=1e-30)


def test_statistics_keep_small_negative_sums_exact():
    """Tiny negative weights next to large positive gradients (rare classes).

    A sum formed as `total - positive` would lose the negatives here.
    """
    targets, dense, logits, upstream = _data("sigmoid_eql", "sparse", seed=3)
    function = lambda t, z, **k: _fused.sigmoid_eql_rows(t, z, ratio=np.zeros(CLASSES, np.float32), **k)
    _, gradient, sums, _ = _run(function, targets, logits, tf.ones([ROWS]), "jit", on_column_sums=True)
    expected_positive, expected_negative = _masked_sums(gradient, dense.numpy() > 0)
    assert expected_negative.max() < 1e-3 * expected_positive.max()
    np.testing.assert_allclose(sums[1], expected_negative, rtol=1e-5)
    np.testing.assert_allclose(sums[0], expected_positive, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("layout", ["sparse", "dense"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_finite_at_extreme_logits(name, layout, dtype):
    targets, _, _, upstream = _data(name, layout)
    rng = np.random.default_rng(1)
    values = [-1e4, 1e4, -88.0, 88.0, -30.0, 30.0, 0.0, 1e-3]
    logits = tf.cast(tf.constant(rng.choice(values, (ROWS, CLASSES)).astype(np.float32)), dtype)
    rows, gradient, sums, _ = _run(LOSSES[name][0], targets, logits, upstream, "jit",
                                   on_column_sums=True)
    assert np.isfinite(rows).all()
    assert gradient.dtype == np.dtype(tf.as_dtype(dtype).as_numpy_dtype)
    assert np.isfinite(gradient.astype(np.float32)).all()
    assert all(np.isfinite(s).all() for s in sums)


def test_gradient_of_rank_three_logits():
    """A dense head `(images, anchors, classes)`: the sums cover every row."""
    rng = np.random.default_rng(2)
    logits = tf.constant(rng.normal(0, 3, (2, 24, CLASSES)).astype(np.float32))
    labels = tf.constant(rng.integers(0, CLASSES + 1, (2, 24)).astype(np.int32))
    dense = tf.one_hot(labels, CLASSES + 1)[..., :CLASSES]
    upstream = tf.constant(rng.uniform(0.5, 1.0, (2, 24)).astype(np.float32))
    fused, reference = LOSSES["efl"]
    rows, gradient, sums, _ = _run(fused, labels, logits, upstream, "jit", on_column_sums=True)
    expected_rows, expected_gradient, _, _ = _run(reference, dense, logits, upstream, "eager")
    np.testing.assert_allclose(rows, expected_rows, rtol=1e-5)
    np.testing.assert_allclose(gradient, expected_gradient, atol=1e-5 * np.abs(expected_gradient).max())
    expected = _masked_sums(expected_gradient.reshape(-1, CLASSES), dense.numpy().reshape(-1, CLASSES) > 0)
    np.testing.assert_allclose(sums[0], expected[0], rtol=1e-5)
    np.testing.assert_allclose(sums[1], expected[1], rtol=1e-5)


# -- the loss classes against the autodiff path (benchmarks/_autodiff_losses.py) --------


CLASS_CASES = {
    "sigmoid_eql": (keras_eql.SigmoidEQL, {"objectness": True}),
    "efl": (keras_eql.EqualizedFocalLoss, {"normalize_by_positives": True, "reduction": "sum"}),
    "eqfl": (keras_eql.EqualizedQualityFocalLoss, {"scale": 4.0}),
    "softmax_eql": (keras_eql.SoftmaxEQL, {"indicator": "positive_and_negative", "tau": 0.7}),
    "fl_eql": (keras_eql.FocalSigmoidEQL, {"normalize_by_positives": True, "reduction": "sum"}),
}


def _class_inputs(name, layout, rng, width):
    """Labels (or dense targets) with ignored rows, and sample weights."""
    top = CLASSES - 1 if name == "softmax_eql" else CLASSES  # C = background
    labels = rng.integers(-1, top + 1, ROWS)
    weights = rng.uniform(0.5, 2.0, ROWS).astype(np.float32)
    if layout == "sparse":
        return labels, weights
    # Dense: the one-hot (objectness positive on background rows), with
    # quality scores for EQFL; an ignored row becomes a zero-weight row.
    targets = np.eye(CLASSES + 1, dtype=np.float32)[np.maximum(labels, 0)][:, :width]
    if name == "eqfl":
        targets *= rng.uniform(0.05, 1.0, (ROWS, 1)).astype(np.float32)
    return targets, np.where(labels < 0, 0.0, weights).astype(np.float32)


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("layout", ["sparse", "dense"])
@pytest.mark.parametrize("name", list(CLASS_CASES))
def test_loss_classes_equal_the_autodiff_path(name, layout, mode):
    """Three steps with ignored rows, sample weights and a scaled loss."""
    cls, options = CLASS_CASES[name]
    config = dict(num_classes=CLASSES, ignore_class=-1, **options)
    width = CLASSES + 1 if options.get("objectness") else CLASSES
    losses = {"fused": cls(**config), "autodiff": AUTODIFF[cls](**config)}

    def step(loss, labels, logits, weights):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = 3.0 * loss(labels, logits, sample_weight=weights)
        return value, tape.gradient(value, logits)

    steps = {key: (tf.function(lambda *a, loss=loss: step(loss, *a), jit_compile=True)
                   if mode == "jit" else lambda *a, loss=loss: step(loss, *a))
             for key, loss in losses.items()}
    rng = np.random.default_rng(4)
    for t in range(3):
        logits = tf.constant(rng.normal(0, 3, (ROWS, width)).astype(np.float32))
        labels, weights = _class_inputs(name, layout, rng, width)
        results = {}
        for key, loss in losses.items():
            value, gradient = steps[key](tf.constant(labels), logits, tf.constant(weights))
            results[key] = (float(value), gradient.numpy(), loss.gradient_statistics())
        value, gradient, statistics = results["autodiff"]
        fused_value, fused_gradient, fused_statistics = results["fused"]
        np.testing.assert_allclose(fused_value, value, rtol=1e-5, err_msg=f"step {t}")
        np.testing.assert_allclose(fused_gradient, gradient, rtol=0,
                                   atol=1e-5 * np.abs(gradient).max(), err_msg=f"step {t}")
        for key in ("positive", "negative", "ratio"):
            np.testing.assert_allclose(fused_statistics[key], statistics[key], rtol=1e-5,
                                       err_msg=f"step {t}: {key}")
        assert statistics["positive"].sum() > 0 and statistics["negative"].sum() > 0
