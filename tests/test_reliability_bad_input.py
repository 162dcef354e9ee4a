"""Bad input: clear errors that name the loss and the offending value.

Eager calls raise `ValueError` at once; under `tf.function` (and so in
`model.fit`) the same message comes from an assertion op as
`InvalidArgumentError`. Under XLA (`jit_compile=True`) assertions compile
away; the documented behaviour there is pinned here too. Non-finite logits
make the loss non-finite (so `TerminateOnNaN` stops training) but never
reach the statistics. Degenerate batches (empty, all ignored, no positives)
give finite values everywhere.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_eql

C = 5
SIGMOID_FAMILY = ("SigmoidEQL", "EqualizedFocalLoss", "EqualizedQualityFocalLoss")
ALL = SIGMOID_FAMILY + ("SoftmaxEQL",)


def make(name, **kwargs):
    kwargs.setdefault("num_classes", C)
    return getattr(keras_eql, name)(**kwargs)


def logits_for(rows=4, seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=(rows, C)), tf.float32)


def good_labels(name):
    return tf.constant([0, 1, 2, 3] if name == "SoftmaxEQL" else [0, 1, C, 3])


def with_label(name, value):
    labels = good_labels(name).numpy().astype("float32")
    labels[2] = value
    return tf.constant(labels)


def _value_pattern(value):
    """`7`, `7.0` or `[7]`: how eager messages and graph assertions print it."""
    text = f"{value:g}"
    return rf"(?<![\d.]){re.escape(text)}(\.0)?(?![\d])"


def assert_names(message, name, value):
    assert name in message, message
    assert re.search(_value_pattern(value), message), f"value {value} not in: {message}"


def bad_labels(name):
    """Out-of-range labels for each loss (sparse, default ignore_class)."""
    if name == "SoftmaxEQL":  # classes 0..C-1, no background, no ignore class
        return [C, C + 3, -1, -2, 1.5]
    return [C + 1, C + 4, -2, 2.5]  # C is background, -1 is ignored


# -- labels -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_out_of_range_labels_raise_in_eager_mode(name):
    loss = make(name)
    loss(good_labels(name), logits_for())  # the valid batch is accepted
    for value in bad_labels(name):
        with pytest.raises(ValueError) as error:
            loss(with_label(name, value), logits_for())
        assert_names(str(error.value), name, value)
        assert "out of range" in str(error.value)


@pytest.mark.parametrize("name", ALL)
def test_out_of_range_labels_raise_in_graph_mode(name):
    loss = make(name)
    step = tf.function(lambda y, z: loss(y, z))
    step(good_labels(name), logits_for())
    for value in bad_labels(name):
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            step(with_label(name, value), logits_for())
        assert_names(error.value.message, name, value)


@pytest.mark.parametrize("name", ["SigmoidEQL", "SoftmaxEQL"])
def test_out_of_range_labels_raise_in_fit(name):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(C)])
    model.compile("sgd", loss=make(name))
    labels = np.array([0, 1, 2, 3]) if name == "SoftmaxEQL" else np.array([0, 1, C, 3])
    labels[1] = 9
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        model.fit(np.ones((4, 3), "float32"), labels, verbose=0)
    assert_names(error.value.message, name, 9)


@pytest.mark.parametrize("name", SIGMOID_FAMILY)
def test_label_of_a_disabled_ignore_class_is_rejected(name):
    make(name)(with_label(name, -1), logits_for())  # default ignore_class=-1
    loss = make(name, ignore_class=None)
    with pytest.raises(ValueError) as error:
        loss(with_label(name, -1), logits_for())
    assert_names(str(error.value), name, -1)
    # ... and a custom ignore class replaces -1, it does not add to it.
    loss = make(name, ignore_class=99)
    loss(with_label(name, 99), logits_for())
    with pytest.raises(ValueError) as error:
        loss(with_label(name, -1), logits_for())
    assert_names(str(error.value), name, -1)


def test_softmax_eql_ignore_class_is_opt_in():
    with pytest.raises(ValueError) as error:
        make("SoftmaxEQL")(with_label("SoftmaxEQL", -1), logits_for())
    assert_names(str(error.value), "SoftmaxEQL", -1)
    value = make("SoftmaxEQL", ignore_class=-1)(with_label("SoftmaxEQL", -1), logits_for())
    assert np.isfinite(value.numpy())


# -- XLA: assertions compile away; documented behaviour -------------------------------
def _xla_step(loss, labels, logits):
    logits = tf.Variable(logits)

    @tf.function(jit_compile=True)
    def step(y):
        with tf.GradientTape() as tape:
            value = loss(y, logits)
        return value, tape.gradient(value, logits)

    value, gradient = step(labels)
    return value.numpy(), gradient.numpy()


def _assert_harmless_nan_step(loss, labels, name, value, good=None):
    """One good XLA step, then one with a bad label: NaN loss, no gradient, no statistics."""
    _xla_step(loss, good_labels(name) if good is None else good, logits_for())
    before = loss.gradient_statistics()
    loss_value, gradient = _xla_step(loss, labels, logits_for(seed=1))
    assert np.isnan(loss_value)  # the progress bar and TerminateOnNaN show it
    np.testing.assert_array_equal(gradient, np.zeros_like(gradient))
    after = loss.gradient_statistics()
    for key in ("positive", "negative"):
        np.testing.assert_array_equal(after[key], before[key])
    assert loss.statistics.step_count() == 1.0
    assert loss.bad_label() == pytest.approx(value, rel=1e-6)
    assert loss.bad_label() is None  # read once


@pytest.mark.parametrize("label,ignore_class", [(C + 1, -1), (C + 4, -1), (-1, None), (2.5, -1)])
@pytest.mark.parametrize("name", SIGMOID_FAMILY)
def test_xla_out_of_range_sigmoid_labels_make_a_harmless_nan_step(name, label, ignore_class):
    loss = make(name, ignore_class=ignore_class)
    _assert_harmless_nan_step(loss, with_label(name, label), name, label)


@pytest.mark.parametrize("label", [C, C + 1, C + 2, -1])
def test_xla_out_of_range_softmax_eql_labels_make_a_harmless_nan_step(label):
    loss = make("SoftmaxEQL")  # no ignore_class: -1 is out of range too
    _assert_harmless_nan_step(loss, with_label("SoftmaxEQL", label), "SoftmaxEQL", label)


def test_xla_label_smoothed_targets_make_a_harmless_nan_efl_step():
    targets = np.eye(C, dtype="float32")[[0, 1, 2, 3]] * 0.9 + 0.1 / C
    loss = make("EqualizedFocalLoss")
    _assert_harmless_nan_step(loss, tf.constant(targets), "EqualizedFocalLoss", 0.9 + 0.1 / C)


@pytest.mark.parametrize("name", ["SigmoidEQL", "SoftmaxEQL"])
def test_fit_under_xla_leaves_weights_and_statistics_on_a_bad_batch(name):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(C)])
    loss = make(name)
    model.compile(keras.optimizers.SGD(0.1), loss=loss, jit_compile=True)
    features = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    model.fit(features, good_labels(name).numpy(), batch_size=4, verbose=0)
    weights, before = model.get_weights(), loss.gradient_statistics()
    history = model.fit(features, with_label(name, C + 1).numpy(), batch_size=4, verbose=0,
                        callbacks=[keras.callbacks.TerminateOnNaN()])
    assert np.isnan(history.history["loss"][-1])
    for weight, expected in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(weight, expected)
    for key in ("positive", "negative"):
        np.testing.assert_array_equal(loss.gradient_statistics()[key], before[key])
    assert loss.bad_label() == C + 1


# -- shapes -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_dense_shape_mismatch_names_the_loss_and_shapes(name):
    for shape in [(4, 3), (3, C), (4, C, 1), (4, 2)]:
        with pytest.raises(ValueError) as error:
            make(name)(tf.zeros(shape), logits_for())
        message = str(error.value)
        assert name in message and str(shape) in message and "(4, 5)" in message, message


@pytest.mark.parametrize("name", ALL)
def test_sparse_batch_mismatch_names_the_loss(name):
    # 3 labels for 4 rows of logits.
    with pytest.raises(ValueError) as error:
        make(name)(tf.constant([0, 1, 2]), logits_for())
    message = str(error.value)
    assert name in message and "(3,)" in message and "(4, 5)" in message, message


@pytest.mark.parametrize("name", ALL)
def test_sparse_batch_mismatch_names_the_loss_in_graph_mode(name):
    loss = make(name)
    step = tf.function(lambda y, z: loss(y, z), input_signature=[
        tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, C], tf.float32)])
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)) as error:
        step(tf.constant([0, 1, 2]), logits_for())
    message = getattr(error.value, "message", str(error.value))
    assert name in message, message


@pytest.mark.parametrize("name", ALL)
def test_second_head_with_another_class_count_is_rejected(name):
    loss = make(name, num_classes=None)
    loss(good_labels(name), logits_for())
    with pytest.raises(ValueError) as error:
        loss(tf.constant([0, 1]), tf.zeros((2, C + 2)))
    message = str(error.value)
    assert name in message and f"{C + 2} classes" in message and f"{C} classes" in message
    assert loss.gradient_statistics()["positive"].shape == (C,)


# -- logits dtype -------------------------------------------------------------------
NON_FLOAT_LOGITS = [
    (tf.constant([[1, 2, 3, 4, 5]] * 4), "int32"),
    (np.ones((4, C), "int64"), "int64"),
    ([[1, 2, 3, 4, 5]] * 4, "int64"),
    (tf.constant([["a"] * C] * 4), "string"),
    (tf.ones((4, C), tf.bool), "bool"),
]


@pytest.mark.parametrize("name", ALL)
def test_non_float_logits_are_rejected(name):
    for logits, dtype in NON_FLOAT_LOGITS:
        with pytest.raises(ValueError) as error:
            make(name)(good_labels(name), logits)
        message = str(error.value)
        assert name in message and dtype in message and "floating-point" in message, message


# -- dense targets ------------------------------------------------------------------
DENSE_OUT_OF_RANGE = [
    ("EqualizedQualityFocalLoss", 1.5),
    ("EqualizedQualityFocalLoss", -0.25),
    ("SoftmaxEQL", -0.25),
    ("SoftmaxEQL", 1.75),
    ("SigmoidEQL", 0.5),        # binary targets only
    ("EqualizedFocalLoss", 0.5),
    ("EqualizedFocalLoss", 2.0),
]


def test_dense_targets_outside_their_range_raise():
    for name, value in DENSE_OUT_OF_RANGE:
        targets = np.zeros((4, C), "float32")
        targets[:, 0] = 1.0
        targets[2, 3] = value
        loss = make(name)
        with pytest.raises(ValueError) as error:
            loss(tf.constant(targets), logits_for())
        assert_names(str(error.value), name, value)
        step = tf.function(lambda y, z: loss(y, z))
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            step(tf.constant(targets), logits_for())
        assert_names(error.value.message, name, value)


def test_soft_targets_in_range_are_accepted_where_they_make_sense():
    targets = np.zeros((4, C), "float32")
    targets[:, 1] = 0.6
    for name in ("EqualizedQualityFocalLoss",):
        assert np.isfinite(make(name)(targets, logits_for()).numpy())
    soft = np.full((4, C), 1.0 / C, "float32")
    assert np.isfinite(make("SoftmaxEQL")(soft, logits_for()).numpy())


# -- constructor arguments ------------------------------------------------------------
BAD_ARGUMENTS = [
    ("SigmoidEQL", {"mapping": "sigmoidd"}, "sigmoidd"),
    ("SigmoidEQL", {"mapping": 3}, "3"),
    ("SoftmaxEQL", {"indicator": "postive"}, "postive"),
    ("SigmoidEQL", {"gamma": -1.0}, "-1.0"),
    ("SigmoidEQL", {"alpha": -0.5}, "-0.5"),
    ("SigmoidEQL", {"gamma": float("nan")}, "nan"),
    ("SoftmaxEQL", {"tau": -1.0}, "-1.0"),
    ("SoftmaxEQL", {"eps": 0.0}, "0.0"),
    ("SoftmaxEQL", {"eps": -1e-4}, "-0.0001"),
    ("EqualizedFocalLoss", {"gamma": 0.0}, "0.0"),
    ("EqualizedFocalLoss", {"gamma": -2.0}, "-2.0"),
    ("EqualizedFocalLoss", {"scale": -8.0}, "-8.0"),
    ("EqualizedFocalLoss", {"alpha": -0.25}, "-0.25"),
    ("EqualizedFocalLoss", {"alpha": 1.25}, "1.25"),
    ("EqualizedQualityFocalLoss", {"scale": -1.0}, "-1.0"),
    ("EqualizedQualityFocalLoss", {"gamma": float("inf")}, "inf"),
    ("EqualizedFocalLoss", {"decay": 0.0}, "0.0"),
    ("EqualizedFocalLoss", {"decay": -0.5}, "-0.5"),
    ("SoftmaxEQL", {"decay": 1.5}, "1.5"),
    ("SigmoidEQL", {"num_classes": 0}, "0"),
    ("SigmoidEQL", {"num_classes": -3}, "-3"),
    ("SoftmaxEQL", {"num_classes": 2.5}, "2.5"),
    ("SoftmaxEQL", {"num_classes": True}, "True"),
    ("EqualizedFocalLoss", {"ignore_class": 0.5}, "0.5"),
    ("EqualizedFocalLoss", {"gamma": "2"}, "'2'"),
    ("EqualizedFocalLoss", {"normalize_by_positives": True}, "sum_over_batch_size"),
]


def test_bad_constructor_arguments_name_the_loss_and_value():
    for name, kwargs, needle in BAD_ARGUMENTS:
        with pytest.raises(ValueError) as error:
            getattr(keras_eql, name)(**kwargs)
        message = str(error.value)
        assert name in message and needle in message, (kwargs, message)


# -- non-finite logits ------------------------------------------------------------------
def _step(loss, labels, logits):
    logits = tf.constant(logits, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        value = loss(labels, logits)
    return value.numpy(), tape.gradient(value, logits).numpy()


def _warm(name):
    """A loss with one finite step of statistics behind it."""
    loss = make(name)
    _step(loss, good_labels(name), logits_for(seed=3))
    return loss


@pytest.mark.parametrize("name", ALL)
def test_non_finite_logits_never_reach_the_statistics(name):
    failures = []
    for bad in (np.nan, np.inf, -np.inf):
        for column, role in ((1, "its positive column"), (2, "a negative column")):
            loss = _warm(name)
            before = loss.gradient_statistics()
            steps = loss.statistics.steps.numpy()
            logits = logits_for(seed=4).numpy()
            logits[1, column] = bad  # row 1 has label 1
            value, _ = _step(loss, good_labels(name), logits)
            case = f"{name}: logit {bad} in {role}"
            if np.isnan(bad) and not np.isnan(value):
                failures.append(f"{case}: loss {value} should be NaN (as Keras' own losses)")
            if name in SIGMOID_FAMILY and np.isfinite(value):
                # As BCE / BFCE, which give NaN or inf for any infinite logit
                # (SoftmaxEQL, like SCCE, is finite for a -inf negative).
                failures.append(f"{case}: loss {value} should not be finite")
            after = loss.gradient_statistics()
            for key in ("positive", "negative", "ratio"):
                if not np.isfinite(after[key]).all():
                    failures.append(f"{case}: {key} not finite: {after[key]}")
                elif not np.array_equal(after[key], before[key]):
                    failures.append(f"{case}: {key} changed by {after[key] - before[key]}")
            if loss.statistics.steps.numpy() != steps:
                failures.append(f"{case}: the step was counted (loss = {value})")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", ALL)
def test_non_finite_logits_of_ignored_rows_are_harmless(name):
    loss = make(name, ignore_class=-1)
    logits = logits_for().numpy()
    logits[2] = [np.nan, np.inf, -np.inf, np.nan, 1.0]
    value, gradient = _step(loss, with_label(name, -1), logits)
    assert np.isfinite(value) and np.isfinite(gradient).all()
    assert (gradient[2] == 0).all()
    assert loss.statistics.steps.numpy() == 1.0


@pytest.mark.parametrize("name", ALL)
def test_terminate_on_nan_stops_with_statistics_of_the_finite_steps(name):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    top = C if name == "SoftmaxEQL" else C + 1
    y = rng.integers(0, top, size=32)
    x_bad = x.copy()
    x_bad[20, 1] = np.nan  # batch 2 (0-based) of 8 rows

    def fit(features, epochs=1):
        keras.utils.set_random_seed(5)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(C)])
        loss = make(name)
        model.compile(keras.optimizers.SGD(0.1), loss=loss)
        history = model.fit(features, y[: len(features)], batch_size=8, epochs=epochs,
                            shuffle=False, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN()])
        return loss, history

    loss, history = fit(x_bad, epochs=3)
    assert len(history.history["loss"]) == 1  # stopped in the first epoch
    reference, _ = fit(x[:16])  # the two finite batches only
    assert loss.statistics.steps.numpy() == reference.statistics.steps.numpy() == 2.0
    for key in ("positive", "negative"):
        values = loss.gradient_statistics()[key]
        assert np.isfinite(values).all()
        np.testing.assert_array_equal(values, reference.gradient_statistics()[key])


# -- degenerate batches ------------------------------------------------------------------
def _assert_all_finite(*arrays):
    for array in arrays:
        assert np.isfinite(np.asarray(array)).all(), array


@pytest.mark.parametrize("name", ALL)
def test_static_empty_batch_is_finite_and_leaves_statistics(name):
    # Keras returns an empty loss tensor for a batch of static size 0.
    loss = _warm(name)
    before = loss.gradient_statistics()
    value, gradient = _step(loss, tf.zeros((0,), tf.int32), np.zeros((0, C)))
    _assert_all_finite(value, gradient)
    after = loss.gradient_statistics()
    for key in ("positive", "negative", "ratio"):
        np.testing.assert_array_equal(after[key], before[key])


@pytest.mark.parametrize("name", ALL)
def test_dynamic_empty_batch_is_finite_and_leaves_statistics(name):
    loss = _warm(name)
    before = loss.gradient_statistics()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, C])])
    def step(y, z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = loss(y, z)
        return value, tape.gradient(value, z)

    value, gradient = step(tf.zeros((0,), tf.int32), tf.zeros((0, C)))
    assert value.numpy() == 0.0
    _assert_all_finite(gradient.numpy())
    after = loss.gradient_statistics()
    for key in ("positive", "negative", "ratio"):
        _assert_all_finite(after[key])
        np.testing.assert_array_equal(after[key], before[key])


@pytest.mark.parametrize("name", ALL)
def test_all_ignored_batch_is_finite_and_adds_nothing(name):
    loss = make(name, ignore_class=-1)
    _step(loss, good_labels(name), logits_for(seed=3))
    before = loss.gradient_statistics()
    value, gradient = _step(loss, tf.constant([-1, -1, -1]), logits_for(rows=3).numpy())
    assert value == 0.0
    _assert_all_finite(gradient)
    assert (gradient == 0).all()
    after = loss.gradient_statistics()
    for key in ("positive", "negative", "ratio"):
        np.testing.assert_array_equal(after[key], before[key])


@pytest.mark.parametrize("name", SIGMOID_FAMILY)
def test_batch_without_positives_is_finite(name):
    loss = make(name)
    for labels in ([C, C, C, C], np.zeros((4, C), "float32")):  # background / dense zeros
        value, gradient = _step(loss, tf.constant(labels), logits_for(seed=6).numpy())
        _assert_all_finite(value, gradient)
        assert value > 0
        statistics = loss.gradient_statistics()
        np.testing.assert_array_equal(statistics["positive"], np.zeros(C))
        assert (statistics["negative"] > 0).all()
        _assert_all_finite(statistics["ratio"])
    # A first step without positives: the ratio is 0 (clamped by the epsilon).
    np.testing.assert_array_equal(loss.gradient_statistics()["ratio"], np.zeros(C))
    value, gradient = _step(loss, good_labels(name), logits_for(seed=7).numpy())
    _assert_all_finite(value, gradient)


@pytest.mark.parametrize("name", ["EqualizedFocalLoss", "EqualizedQualityFocalLoss"])
def test_normalize_by_positives_without_positives_is_finite(name):
    loss = make(name, normalize_by_positives=True, reduction="sum")
    value, gradient = _step(loss, tf.constant([C, C, -1]), logits_for(rows=3).numpy())
    _assert_all_finite(value, gradient)
    value, gradient = _step(loss, tf.constant([-1, -1, -1]), logits_for(rows=3).numpy())
    assert value == 0.0
    _assert_all_finite(gradient, loss.gradient_statistics()["ratio"])


def test_xla_bad_seesaw_label_leaves_counts_and_returns_nan():
    loss = keras_eql.SeesawLoss(num_classes=C)
    _xla_step(loss, good_labels("SoftmaxEQL"), logits_for())
    before = loss.sample_counts()
    value, gradient = _xla_step(loss, with_label("SoftmaxEQL", C), logits_for(seed=1))
    assert np.isnan(value)
    np.testing.assert_array_equal(gradient, np.zeros_like(gradient))
    np.testing.assert_array_equal(loss.sample_counts(), before)


# -- the opt-in validator ----------------------------------------------------------------
def test_validate_labels_passes_good_arrays_and_datasets():
    features = np.zeros((6, 2), "float32")
    labels = np.array([0, 1, C, -1, 2, 3])
    assert keras_eql.validate_labels(make("EqualizedFocalLoss"), labels) == 6
    dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(4)
    assert keras_eql.validate_labels(make("SigmoidEQL"), dataset) == 6
    dense = np.eye(C, dtype="float32")[[0, 1]] * 0.7
    assert keras_eql.validate_labels(make("EqualizedQualityFocalLoss"), dense) == 2 * C


@pytest.mark.parametrize("name,labels,message", [
    ("SigmoidEQL", np.array([0, 1, C + 1]), rf"SigmoidEQL: label {C + 1} at index 2 .*0\.\.{C}"),
    ("SoftmaxEQL", np.array([[0], [C]]), rf"SoftmaxEQL: label {C} at index 1 .*0\.\.{C - 1}"),
    ("EqualizedFocalLoss", np.full((2, C), 0.9, "float32"), r"EqualizedFocalLoss: dense target 0.9 at index 0"),
    ("EqualizedFocalLoss", np.array([0.0, 1.5]), r"label 1.5 at index 1"),
])
def test_validate_labels_names_the_loss_value_and_place(name, labels, message):
    with pytest.raises(ValueError, match=message):
        keras_eql.validate_labels(make(name), labels)


def test_validate_labels_finds_the_batch_of_a_dataset():
    labels = np.array([0, 1, 2, 3, C + 3, 1])
    dataset = tf.data.Dataset.from_tensor_slices((np.zeros((6, 2)), labels, np.ones(6))).batch(2)
    with pytest.raises(ValueError, match=rf"label {C + 3} at batch 2, index 0"):
        keras_eql.validate_labels(make("SigmoidEQL"), dataset)


def test_validate_labels_needs_the_number_of_classes():
    with pytest.raises(ValueError, match="SigmoidEQL: validate_labels needs `num_classes`"):
        keras_eql.validate_labels(keras_eql.SigmoidEQL(), np.array([0]))
    assert keras_eql.validate_labels(keras_eql.SigmoidEQL(), np.array([0, 4]), num_classes=4) == 2


# -- no background label ----------------------------------------------------------------
@pytest.mark.parametrize("name", SIGMOID_FAMILY + ("FocalSigmoidEQL",))
def test_background_false_makes_label_c_an_error(name):
    loss = make(name, background=False)
    with pytest.raises(ValueError) as error:
        loss(with_label(name, C), logits_for())
    assert_names(str(error.value), name, C)
    assert f"0..{C - 1}" in str(error.value) and "background" not in str(error.value)
    assert np.isfinite(loss(tf.constant([0, 1, C - 1, -1]), logits_for()).numpy())
    restored = type(loss).from_config(loss.get_config())
    assert restored.get_config()["background"] is False
    # Under XLA: a harmless NaN step, as for any other bad label.
    _assert_harmless_nan_step(make(name, background=False), with_label(name, C), name, C,
                              good=tf.constant([0, 1, 2, 3]))


def test_background_switch_is_validated():
    with pytest.raises(ValueError, match="SigmoidEQL: `background` must be True or False, got 'no'"):
        keras_eql.SigmoidEQL(background="no")
    with pytest.raises(ValueError, match="SigmoidEQL: objectness=True .* needs background=True"):
        keras_eql.SigmoidEQL(objectness=True, background=False)
    assert keras_eql.validate_labels(keras_eql.EqualizedFocalLoss(num_classes=C, background=False),
                                     np.array([0, C - 1])) == 2
    with pytest.raises(ValueError, match=rf"label {C} at index 0"):
        keras_eql.validate_labels(keras_eql.EqualizedFocalLoss(num_classes=C, background=False),
                                  np.array([C]))


@pytest.mark.parametrize("terminate", [False, True])
def test_logger_raises_a_bad_label_met_under_xla(terminate):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(C)])
    model.compile(keras.optimizers.SGD(0.1), loss=make("EqualizedFocalLoss"), jit_compile=True)
    features = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    labels = np.array([0, 1, 2, 3, 0, C + 2, 1, 2])  # the second batch of 4 is bad
    callbacks = [keras_eql.GradientStatisticsLogger()]
    if terminate:
        callbacks.insert(0, keras.callbacks.TerminateOnNaN())
    with pytest.raises(ValueError) as error:
        model.fit(features, labels, batch_size=4, epochs=2, verbose=0, shuffle=False,
                  callbacks=callbacks)
    message = str(error.value)
    assert "EqualizedFocalLoss" in message and f"label {C + 2}" in message
    assert f"0..{C}" in message and "validate_labels" in message
