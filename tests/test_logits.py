"""Every keras_eql loss takes raw logits: `from_logits`, the probabilities warning, the docs."""

import inspect
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_eql
from keras_eql import baselines

# Every loss class, with the arguments it cannot do without.
LOSSES = [
    (keras_eql.SigmoidEQL, {}),
    (keras_eql.SoftmaxEQL, {}),
    (keras_eql.EqualizedFocalLoss, {}),
    (keras_eql.EqualizedQualityFocalLoss, {}),
    (baselines.EQLv1, {"rare_mask": [False, True, True]}),
    (baselines.SeesawLoss, {}),
    (baselines.LogitAdjustedLoss, {}),
    (baselines.BalancedSoftmax, {}),
    (baselines.ClassBalancedLoss, {"class_counts": [5, 2, 1]}),
]


def probability_warnings(caught):
    return [str(w.message) for w in caught if "probabilities" in str(w.message)]


def test_from_logits_true_is_accepted_and_kept_in_the_config():
    for cls, arguments in LOSSES:
        loss = cls(from_logits=True, **arguments)
        config = loss.get_config()
        assert config["from_logits"] is True, cls
        assert cls(**arguments).get_config()["from_logits"] is True, cls
        assert cls.from_config(config).get_config() == config, cls
        assert keras_eql.get(cls.__name__, from_logits=True, **arguments).from_logits is True, cls


def test_from_logits_false_is_rejected_naming_the_loss():
    for cls, arguments in LOSSES:
        with pytest.raises(ValueError, match=rf"^{cls.__name__}: from_logits=False is not supported; .*raw logits"):
            cls(from_logits=False, **arguments)
        with pytest.raises(ValueError, match=rf"^{cls.__name__}: from_logits='yes'"):
            cls(from_logits="yes", **arguments)


SIGMOID_LOSSES = (keras_eql.SigmoidEQL, keras_eql.EqualizedFocalLoss, keras_eql.EqualizedQualityFocalLoss,
                  baselines.EQLv1)


def test_probabilities_draw_a_warning_and_logits_do_not():
    labels = np.array([0, 1, 2, 0])
    logits = tf.constant(np.random.default_rng(0).normal(size=(4, 3)), tf.float32)
    for cls, arguments in LOSSES:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cls(**arguments)(labels, logits)
        assert not probability_warnings(caught), cls
        activation = keras.activations.sigmoid if cls in SIGMOID_LOSSES else keras.activations.softmax
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cls(**arguments)(labels, activation(logits))
        (message,) = probability_warnings(caught)
        assert message.startswith(f"{cls.__name__}: y_pred is the output of a softmax or sigmoid activation")
        assert "raw logits" in message


def test_fit_on_a_model_ending_in_softmax_warns():
    """The newcomer's case: `Dense(C, activation="softmax")` trained with SoftmaxEQL under XLA."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", loss=keras_eql.SoftmaxEQL(), jit_compile=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(np.random.rand(16, 4), np.random.randint(0, 3, 16), verbose=0)
    assert any(message.startswith("SoftmaxEQL") for message in probability_warnings(caught))


def test_a_sigmoid_op_in_a_graph_warns():
    """Outputs of `tf.nn.sigmoid` (no Keras tag) are recognised by their op inside a graph."""
    loss = keras_eql.EqualizedFocalLoss()

    @tf.function
    def step(logits):
        return loss(tf.constant([0, 1]), tf.nn.sigmoid(logits))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step(tf.zeros((2, 3)))
    assert probability_warnings(caught) and "a sigmoid activation" in probability_warnings(caught)[0]


def test_every_loss_docstring_says_what_its_inputs_are():
    for cls in [cls for cls, _ in LOSSES] + [keras_eql.EqualizationLoss]:
        doc = inspect.getdoc(cls)
        inputs = doc.split("Inputs", 1)[1].split("Args:", 1)[0]
        for name in ("y_true:", "y_pred:", "sample_weight:"):
            assert name in inputs, (cls.__name__, name)
        assert "logits" in inputs, cls.__name__
        assert "from_logits" in doc, cls.__name__
