"""Tests of `keras_eql.registry`: every loss by name, instance or config dict."""

import doctest

import keras
import numpy as np
import pytest

from keras_eql import baselines, losses, registry
from keras_eql.registry import available_losses, get

# Arguments the losses that need them get when built by name.
REQUIRED = {
    "eql_v1": {"rare_mask": [False, True, False, True]},
    "class_balanced": {"class_counts": [40, 20, 5, 1]},
}

EXPECTED_CLASSES = {
    "efl": losses.EqualizedFocalLoss,
    "eqfl": losses.EqualizedQualityFocalLoss,
    "fl_eql": losses.FocalSigmoidEQL,
    "sigmoid_eql": losses.SigmoidEQL,
    "softmax_eql": losses.SoftmaxEQL,
    "eql_v1": baselines.EQLv1,
    "seesaw": baselines.SeesawLoss,
    "logit_adjusted": baselines.LogitAdjustedLoss,
    "balanced_softmax": baselines.BalancedSoftmax,
    "class_balanced": baselines.ClassBalancedLoss,
    "binary_crossentropy": keras.losses.BinaryCrossentropy,
    "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
    "binary_focal_crossentropy": keras.losses.BinaryFocalCrossentropy,
}


def test_available_losses_lists_every_short_name_once():
    names = available_losses()
    assert list(names) == list(EXPECTED_CLASSES)
    assert len(set(names)) == len(names)


def test_available_losses_marks_the_names_that_need_arguments():
    required = {name: needs for name, needs in available_losses().items() if needs}
    assert required == {"eql_v1": "rare_mask or class_frequencies", "class_balanced": "class_counts"}
    for name, needs in available_losses().items():
        if needs is None:
            assert type(get(name)) is EXPECTED_CLASSES[name], name


def test_every_name_and_class_name_builds_a_working_loss():
    labels = np.array([0, 1, 2, 3, 1, 0])
    logits = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    for name, cls in EXPECTED_CLASSES.items():
        loss = get(name, **REQUIRED.get(name, {}))
        assert type(loss) is cls, name
        by_class_name = get(cls.__name__, **REQUIRED.get(name, {}))
        assert type(by_class_name) is cls, name
        if cls in (keras.losses.BinaryCrossentropy, keras.losses.BinaryFocalCrossentropy):
            targets = np.eye(4, dtype=np.float32)[labels]
        else:
            targets = labels
        value = float(loss(targets, logits))
        assert np.isfinite(value) and value > 0, name


def test_keras_baselines_take_logits_by_default():
    for name in ("binary_crossentropy", "sparse_categorical_crossentropy", "binary_focal_crossentropy"):
        assert get(name).get_config()["from_logits"] is True
        assert get(name, from_logits=False).get_config()["from_logits"] is False
    labels = np.array([1, 0])
    logits = np.array([[0.3, 2.0], [1.0, -1.0]], np.float32)
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    np.testing.assert_allclose(get("sparse_categorical_crossentropy")(labels, logits), expected)
    assert get("binary_focal_crossentropy", gamma=3.0).get_config()["gamma"] == 3.0


def test_keyword_arguments_reach_the_constructor():
    loss = get("seesaw", p=0.5, q=1.0, objectness=True)
    assert (loss.p, loss.q, loss.objectness) == (0.5, 1.0, True)
    assert get("efl", gamma=3.0, scale=4.0).scale == 4.0
    assert get("logit_adjusted", class_priors=[0.7, 0.3], tau=0.5).tau == 0.5
    assert get("keras_eql>BalancedSoftmax", class_counts=[3, 1]).sample_counts().tolist() == [3.0, 1.0]


def test_instances_pass_through_unchanged():
    loss = baselines.SeesawLoss()
    assert get(loss) is loss
    plain = keras.losses.BinaryCrossentropy()
    assert get(plain) is plain
    with pytest.raises(ValueError, match=r"keyword arguments \['q'\] cannot be applied"):
        get(loss, q=1.0)


def test_config_dicts_round_trip():
    original = baselines.ClassBalancedLoss([9, 3, 1], beta=0.99, base="focal", gamma=1.0)
    serialized = keras.saving.serialize_keras_object(original)
    clone = get(serialized)
    assert type(clone) is baselines.ClassBalancedLoss
    assert clone.get_config() == original.get_config()
    overridden = get(serialized, beta=0.5)
    assert overridden.beta == 0.5 and overridden.base == "focal"
    short = get({"class_name": "seesaw", "config": {"q": 0.0}})
    assert type(short) is baselines.SeesawLoss and short.q == 0.0
    keras_dict = keras.saving.serialize_keras_object(keras.losses.BinaryCrossentropy(from_logits=True))
    assert get(keras_dict).get_config()["from_logits"] is True
    other_keras = get({"class_name": "Huber", "config": {}})
    assert type(other_keras) is keras.losses.Huber


def test_unknown_identifiers_raise_listing_valid_names():
    with pytest.raises(ValueError, match="unknown loss 'focal'. Valid names: efl, eqfl, .*balanced_softmax"):
        get("focal")
    with pytest.raises(ValueError, match="unknown loss 'NoSuchLoss'. Valid names: efl"):
        get({"class_name": "NoSuchLoss", "config": {}})
    with pytest.raises(ValueError, match="needs a 'class_name' key"):
        get({"config": {}})
    with pytest.raises(ValueError, match="cannot interpret 3"):
        get(3)


def test_missing_required_arguments_are_named():
    with pytest.raises(ValueError, match=r"'eql_v1' \(EQLv1\) cannot be built without arguments; "
                                         r"pass rare_mask or class_frequencies, "
                                         r"e.g. keras_eql.get\('eql_v1', rare_mask=...\)"):
        get("eql_v1")
    with pytest.raises(ValueError, match=r"'ClassBalancedLoss' \(ClassBalancedLoss\) .* pass class_counts"):
        get("ClassBalancedLoss")
    with pytest.raises(ValueError, match=r"'class_balanced' .* pass class_counts"):
        get({"class_name": "class_balanced", "config": {"beta": 0.9}})
    # Given, they reach the loss, whose own checks still apply.
    with pytest.raises(ValueError, match="EQLv1: give exactly one of `rare_mask`"):
        get("eql_v1", rare_mask=[True], class_frequencies=[0.1])


def test_compile_with_a_short_name_raises_naming_the_fix():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile("sgd", loss="efl")
    with pytest.raises(ValueError, match=r"loss='efl' given by name .* loss=keras_eql.get\('efl'\) "
                                         r"or keras_eql.EqualizedFocalLoss"):
        model.fit(np.ones((8, 4)), np.zeros(8), verbose=0)
    with pytest.raises(ValueError, match=r"keras_eql.get\('seesaw'\)"):
        keras.losses.get("seesaw")
    # Keras's own names and keras_eql instances are untouched.
    assert keras.losses.get("mse") is keras.losses.mean_squared_error
    assert type(keras.losses.get("BinaryCrossentropy")) is keras.losses.BinaryCrossentropy
    model.compile("sgd", loss=get("efl"))
    model.fit(np.ones((8, 4)), np.zeros(8), verbose=0)
    assert float(model.loss.statistics.steps.numpy()) == 1.0


def test_docstring_examples_run():
    result = doctest.testmod(registry, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
