"""Tiny models and data shared by the core tests."""

import keras
import numpy as np

import keras_eql

NUM_CLASSES = 5
FEATURES = 6


def make_loss(kind, **kwargs):
    """A keras_eql loss by short name (objectness for Sigmoid-EQL is opt-in)."""
    classes = {
        "sigmoid_eql": keras_eql.SigmoidEQL,
        "softmax_eql": keras_eql.SoftmaxEQL,
        "efl": keras_eql.EqualizedFocalLoss,
        "eqfl": keras_eql.EqualizedQualityFocalLoss,
    }
    return classes[kind](**kwargs)


LOSS_KINDS = ["sigmoid_eql", "softmax_eql", "efl", "eqfl"]


def long_tailed_data(kind, rows=64, seed=0):
    """Features and sparse labels with a long-tailed class profile."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, FEATURES)).astype("float32")
    probabilities = 0.5 ** np.arange(NUM_CLASSES + 1)
    if kind == "softmax_eql":  # no background label
        probabilities = probabilities[:-1]
    labels = rng.choice(len(probabilities), size=rows, p=probabilities / probabilities.sum())
    return features, labels.astype("int32")


def make_model(seed=0, dtype=None):
    """A two-layer MLP with deterministic initial weights."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((FEATURES,))
    hidden = keras.layers.Dense(8, activation="relu", dtype=dtype)(inputs)
    outputs = keras.layers.Dense(NUM_CLASSES, dtype=dtype)(hidden)
    if dtype is not None:
        outputs = keras.layers.Activation("linear", dtype="float32")(outputs)
    return keras.Model(inputs, outputs)
