"""`targets="one_hot"`: dense targets with at most one positive per row take the ids' path.

The route must change nothing but the speed: the same loss, gradient and
statistics as the same rows given as class ids (binary losses) or through the
general dense path (EQFL's quality-scaled rows), and every check of dense
targets still holds, plus one: a row with several positives is an error
(eager and graph mode) or a harmless NaN step that the loss records (XLA).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_eql

C = 6
ROWS = 24


def _labels(seed=0, background=C):
    rng = np.random.default_rng(seed)
    return np.where(rng.random(ROWS) < 0.6, rng.integers(0, C, ROWS), background).astype("int32")


def _one_hot(labels, width):
    return np.eye(width + 1, dtype="float32")[labels][:, :width]


def _logits(seed=0, width=C):
    return tf.constant(np.random.default_rng(100 + seed).normal(0.0, 2.0, (ROWS, width)), tf.float32)


def _steps(loss, targets_per_step, jit):
    """Loss values and gradients of consecutive steps (the statistics move between them)."""

    def step(targets, logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = loss(targets, logits)
        return value, tape.gradient(value, logits)

    step = tf.function(step, jit_compile=True) if jit else step
    out = []
    for index, targets in enumerate(targets_per_step):
        value, gradient = step(tf.constant(targets), _logits(index, targets.shape[-1]
                                                             if targets.ndim == 2 else C + extra(loss)))
        out.append((value.numpy(), gradient.numpy()))
    return out, loss.gradient_statistics()


def extra(loss):
    return 1 if getattr(loss, "objectness", False) else 0


BINARY = [
    (keras_eql.EqualizedFocalLoss, {}),
    (keras_eql.SigmoidEQL, {"objectness": True}),
    (keras_eql.FocalSigmoidEQL, {"normalize_by_positives": True, "reduction": "sum"}),
]


@pytest.mark.parametrize("cls,options", BINARY)
def test_one_hot_route_equals_class_ids(cls, options, jit=False):
    """Loss, gradient and statistics of two steps, one-hot rows vs the same rows as ids.

    Eager: the XLA build of the same ids' path is checked with EQFL's quality
    rows below, and `tests/test_fused.py` checks it against autodiff.
    """
    objectness = options.get("objectness", False)
    width = C + (1 if objectness else 0)
    # With objectness, background rows are label C: the objectness column's positive.
    labels = [_labels(seed) for seed in range(2)]
    dense = [_one_hot(ids, width) for ids in labels]
    expected, expected_statistics = _steps(cls(num_classes=C, **options), labels, jit)
    routed, statistics = _steps(cls(num_classes=C, targets="one_hot", **options), dense, jit)
    for (value, gradient), (want_value, want_gradient) in zip(routed, expected):
        np.testing.assert_allclose(value, want_value, rtol=1e-6)
        np.testing.assert_allclose(gradient, want_gradient, rtol=1e-5, atol=1e-9)
    for key in ("positive", "negative", "ratio"):
        np.testing.assert_allclose(statistics[key], expected_statistics[key], rtol=1e-5, atol=1e-9)
    assert np.any(statistics["positive"] > 0)


@pytest.mark.parametrize("jit", [False, True])
def test_quality_scaled_one_hot_rows_equal_the_general_dense_path(jit):
    """EQFL: one-hot times an IoU score, routed, equals `targets="any"` (the general path)."""
    rng = np.random.default_rng(3)
    dense = [_one_hot(_labels(seed), C) * rng.uniform(0.2, 1.0, (ROWS, 1)).astype("float32")
             for seed in range(2)]
    cls = keras_eql.EqualizedQualityFocalLoss
    expected, expected_statistics = _steps(cls(num_classes=C), dense, jit)
    routed, statistics = _steps(cls(num_classes=C, targets="one_hot"), dense, jit)
    for (value, gradient), (want_value, want_gradient) in zip(routed, expected):
        np.testing.assert_allclose(value, want_value, rtol=1e-6)
        np.testing.assert_allclose(gradient, want_gradient, rtol=1e-5, atol=1e-9)
    for key in ("positive", "negative", "ratio"):
        np.testing.assert_allclose(statistics[key], expected_statistics[key], rtol=1e-5, atol=1e-9)
    # Quality matters: ids (quality 1) give another loss.
    ids_value = cls(num_classes=C)(tf.constant(_labels(0)), _logits(0)).numpy()
    assert abs(ids_value - expected[0][0]) > 1e-3


def _multi_hot():
    targets = _one_hot(_labels(0), C)
    targets[5] = 0.0
    targets[5, [1, 4]] = 1.0
    return targets


@pytest.mark.parametrize("cls", [keras_eql.EqualizedFocalLoss, keras_eql.SigmoidEQL,
                                 keras_eql.EqualizedQualityFocalLoss])
def test_a_row_with_two_positives_raises_in_eager_and_graph_mode(cls):
    loss = cls(num_classes=C, targets="one_hot")
    with pytest.raises(ValueError, match=rf"{cls.__name__}: targets='one_hot' .* several "
                                         r"\(they sum to 2(\.0)?\)"):
        loss(tf.constant(_multi_hot()), _logits())
    step = tf.function(lambda y, z: loss(y, z))
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"{cls.__name__}: targets=.*several"):
        step(tf.constant(_multi_hot()), _logits())
    # The general route takes the same row.
    assert np.isfinite(cls(num_classes=C)(tf.constant(_multi_hot()), _logits()).numpy())


@pytest.mark.parametrize("cls,value", [(keras_eql.EqualizedFocalLoss, 0.5),
                                       (keras_eql.EqualizedQualityFocalLoss, 1.5),
                                       (keras_eql.EqualizedQualityFocalLoss, np.nan)])
def test_bad_target_values_still_raise_on_the_route(cls, value):
    targets = _one_hot(_labels(0), C)
    targets[7, 2] = value
    with pytest.raises(ValueError, match=rf"{cls.__name__}: dense target {value}"):
        cls(num_classes=C, targets="one_hot")(tf.constant(targets), _logits())


def test_xla_multi_hot_row_is_a_harmless_recorded_nan_step():
    loss = keras_eql.EqualizedFocalLoss(num_classes=C, targets="one_hot")
    logits = tf.Variable(_logits())

    @tf.function(jit_compile=True)
    def step(y):
        with tf.GradientTape() as tape:
            value = loss(y, logits)
        return value, tape.gradient(value, logits)

    step(tf.constant(_one_hot(_labels(0), C)))
    before = loss.gradient_statistics()
    value, gradient = step(tf.constant(_multi_hot()))
    assert np.isnan(value.numpy())
    np.testing.assert_array_equal(gradient.numpy(), 0.0)
    for key in ("positive", "negative"):
        np.testing.assert_array_equal(loss.gradient_statistics()[key], before[key])
    assert loss.bad_label() == 2.0  # the row's sum


def test_targets_argument_is_validated_and_serialised():
    with pytest.raises(ValueError, match=r"EqualizedFocalLoss: `targets` must be .* 'onehot'"):
        keras_eql.EqualizedFocalLoss(targets="onehot")
    for cls in (keras_eql.SigmoidEQL, keras_eql.FocalSigmoidEQL, keras_eql.EqualizedFocalLoss,
                keras_eql.EqualizedQualityFocalLoss):
        loss = cls(num_classes=C, targets="one_hot")
        config = loss.get_config()
        assert config["targets"] == "one_hot"
        assert cls.from_config(config).targets == "one_hot"
        restored = keras.losses.deserialize(keras.losses.serialize(loss))
        assert restored.targets == "one_hot"
    assert "targets" not in keras_eql.SoftmaxEQL(num_classes=C).get_config()
