"""The baseline and functional cases that TensorFlow records and JAX and PyTorch replay (no TensorFlow).

tests/fixtures/make_baseline_fixtures.py evaluates every case under
TensorFlow into tests/fixtures/tf_baselines.json;
tests/backend_jax/test_jax_baselines.py and
tests/backend_torch/test_torch_baselines.py evaluate the same cases and
compare (`assert_functional`, `fit_model`, `assert_fit_final`). Inputs are
fixed NumPy arrays (seeded), so every side sees the same bits.
"""

import json
import pathlib

import numpy as np

NUM_CLASSES = 5
ROWS = 12
COUNTS = np.array([50.0, 20.0, 5.0, 2.0, 0.0], np.float32)  # one class not seen yet


def inputs():
    """Logits for C, C + 1 and C + 2 columns, labels of each layout, dense targets, weights."""
    rng = np.random.default_rng(7)
    logits = (3.0 * rng.normal(size=(ROWS, NUM_CLASSES + 2))).astype("float32")
    classes = rng.integers(0, NUM_CLASSES, ROWS).astype("int32")
    with_background = classes.copy()
    with_background[[2, 7]] = NUM_CLASSES
    ignored = classes.copy()
    ignored[[3, 9]] = -1
    ignored_background = with_background.copy()
    ignored_background[[3]] = -1
    one_hot = np.eye(NUM_CLASSES, dtype="float32")[classes]
    multi_hot = (rng.random((ROWS, NUM_CLASSES)) < 0.3).astype("float32")
    soft = rng.random((ROWS, NUM_CLASSES)).astype("float32")
    soft /= soft.sum(-1, keepdims=True)
    return {
        "logits": logits, "classes": classes, "with_background": with_background,
        "ignored": ignored, "ignored_background": ignored_background, "one_hot": one_hot,
        "multi_hot": multi_hot, "soft": soft,
        "weights": np.linspace(0.5, 1.5, ROWS).astype("float32"),
        "ratio": rng.random(NUM_CLASSES).astype("float32") * 1.2,
        "quality": (one_hot * rng.random((ROWS, 1))).astype("float32"),
    }


# name: (class name, constructor kwargs, label key, logit columns, sample weights?, counts?)
LOSS_CASES = {
    "eql_v1": ("EQLv1", dict(rare_mask=[False, False, True, True, False]),
               "ignored_background", NUM_CLASSES, True, False),
    "eql_v1_dense": ("EQLv1", dict(class_frequencies=[0.5, 0.2, 0.001, 0.0, 0.3]),
                     "multi_hot", NUM_CLASSES, False, False),
    "seesaw": ("SeesawLoss", dict(num_classes=NUM_CLASSES, update_counts=False),
               "classes", NUM_CLASSES, True, True),
    "seesaw_dense": ("SeesawLoss", dict(num_classes=NUM_CLASSES, update_counts=False,
                                                p=0.5, q=1.5, eps=0.05),
                             "one_hot", NUM_CLASSES, False, True),
    "seesaw_objectness": ("SeesawLoss", dict(num_classes=NUM_CLASSES, update_counts=False,
                                             objectness=True, ignore_class=-1),
                          "ignored_background", NUM_CLASSES + 2, True, True),
    "logit_adjusted": ("LogitAdjustedLoss", dict(class_priors=[0.5, 0.2, 0.15, 0.1, 0.05],
                                                 tau=0.7, ignore_class=-1),
                       "ignored", NUM_CLASSES, True, False),
    "logit_adjusted_online": ("LogitAdjustedLoss", dict(num_classes=NUM_CLASSES,
                                                        update_counts=False),
                              "soft", NUM_CLASSES, False, True),
    "balanced_softmax": ("BalancedSoftmax", dict(class_counts=[40, 30, 5, 2, 1]),
                         "classes", NUM_CLASSES, True, False),
    "balanced_softmax_online": ("BalancedSoftmax", dict(num_classes=NUM_CLASSES,
                                                        update_counts=False, ignore_class=-1),
                                "ignored", NUM_CLASSES, False, True),
    "class_balanced_softmax": ("ClassBalancedLoss", dict(class_counts=[40, 30, 5, 2, 1],
                                                         beta=0.99),
                               "soft", NUM_CLASSES, True, False),
    "class_balanced_sigmoid": ("ClassBalancedLoss", dict(class_counts=[40, 30, 5, 2, 1],
                                                         beta=0.9, base="sigmoid"),
                               "with_background", NUM_CLASSES, False, False),
    "class_balanced_focal": ("ClassBalancedLoss", dict(class_counts=[40, 30, 5, 2, 1],
                                                       beta=0.999, base="focal", gamma=1.5,
                                                       ignore_class=-1),
                             "ignored_background", NUM_CLASSES, True, False),
}


def functional_cases(keras_eql, data):
    """name -> output of a public function of `keras_eql.functional` / `keras_eql.baselines`."""
    functional, baselines = keras_eql.functional, keras_eql.baselines
    z5, z6, z7 = (data["logits"][:, :width] for width in (5, 6, 7))
    y6 = np.eye(NUM_CLASSES + 1, dtype="float32")[data["with_background"]]
    ratio = data["ratio"]
    return {
        "sigmoid_eql_weights_sqrt": functional.sigmoid_eql_weights(ratio, mapping="sqrt"),
        "sigmoid_eql": functional.sigmoid_eql(data["multi_hot"], z5, ratio=ratio, gamma=6.0),
        "sigmoid_eql_objectness": functional.sigmoid_eql(y6, z6, ratio=ratio, objectness=True),
        "sigmoid_eql_scores": functional.sigmoid_eql_scores(z6),
        "equalized_focal_loss": functional.equalized_focal_loss(
            data["one_hot"], z5, ratio=np.clip(ratio, 0, 1), alpha=0.3, scale=4.0),
        "equalized_focal_loss_no_alpha": functional.equalized_focal_loss(
            data["multi_hot"], z5, ratio=np.clip(ratio, 0, 1), alpha=None,
            focusing_factor=False),
        "equalized_quality_focal_loss": functional.equalized_quality_focal_loss(
            data["quality"], z5, ratio=np.clip(ratio, 0, 1)),
        "focal_sigmoid_eql": functional.focal_sigmoid_eql(data["multi_hot"], z5, ratio=ratio),
        "softmax_eql_sparse": functional.softmax_eql(data["classes"], z5, indicator=ratio,
                                                     tau=0.7),
        "softmax_eql_dense": functional.softmax_eql(data["soft"], z5, indicator=ratio * 0.0),
        "eql_v1": baselines.eql_v1(y6[:, :NUM_CLASSES], z5, rare_mask=[0, 1, 0, 1, 1]),
        "seesaw_cross_entropy": baselines.seesaw_cross_entropy(
            data["classes"], z5, class_counts=COUNTS, p=0.6, q=1.0),
        "seesaw_scores": baselines.seesaw_scores(z7),
        "seesaw_scores_plain": baselines.seesaw_scores(z5, objectness=False),
        "logit_adjust": baselines.logit_adjust(z5, class_priors=[5, 4, 3, 2, 1], tau=1.5),
        "logit_adjusted_cross_entropy": baselines.logit_adjusted_cross_entropy(
            data["soft"], z5, class_priors=[5, 4, 3, 2, 1], tau=0.5),
        "balanced_softmax_cross_entropy": baselines.balanced_softmax_cross_entropy(
            data["classes"], z5, class_counts=[5, 4, 3, 2, 1]),
        "class_balanced_weights": baselines.class_balanced_weights([900, 90, 9, 3, 1],
                                                                   beta=0.99),
        "class_balanced_loss_focal": baselines.class_balanced_loss(
            data["multi_hot"], z5, class_weights=[0.5, 1.5, 1.0, 0.7, 1.3], base="focal"),
        "class_balanced_loss_sparse": baselines.class_balanced_loss(
            data["classes"], z5, class_weights=[0.5, 1.5, 1.0, 0.7, 1.3]),
        "sigmoid_focal_cross_entropy": baselines.sigmoid_focal_cross_entropy(
            data["multi_hot"], z5, gamma=0.5),
    }


# Online counting in `fit`: name -> (class name, kwargs, label key, logit columns).
FIT_CASES = {
    "seesaw": ("SeesawLoss", dict(num_classes=NUM_CLASSES), "classes", NUM_CLASSES),
    "seesaw_objectness": ("SeesawLoss", dict(objectness=True, ignore_class=-1),
                          "ignored_background", NUM_CLASSES + 2),
    "logit_adjusted_online": ("LogitAdjustedLoss", dict(num_classes=NUM_CLASSES),
                              "classes", NUM_CLASSES),
    "balanced_softmax_online": ("BalancedSoftmax", dict(ignore_class=-1), "ignored",
                                NUM_CLASSES),
}
FIT_ROWS, FIT_BATCH, FEATURES, LEARNING_RATE = 48, 12, 4, 0.5


def fit_data(label_key):
    """Features and labels for the fit cases (48 rows, the label layout of `label_key`)."""
    rng = np.random.default_rng(3)
    features = rng.normal(size=(FIT_ROWS, FEATURES)).astype("float32")
    probabilities = 0.6 ** np.arange(NUM_CLASSES)
    labels = rng.choice(NUM_CLASSES, FIT_ROWS, p=probabilities / probabilities.sum())
    labels = labels.astype("int32")
    if "background" in label_key:
        labels[::7] = NUM_CLASSES
    if "ignored" in label_key:
        labels[1::9] = -1
    return features, labels


def reference_counts(labels, epochs):
    """NumPy: the counts after `epochs` of training on `labels` (background, ignored: none)."""
    counted = labels[(labels >= 0) & (labels < NUM_CLASSES)]
    return epochs * np.bincount(counted, minlength=NUM_CLASSES).astype("float32")


RECORD_PATH = pathlib.Path(__file__).parent / "fixtures" / "tf_baselines.json"


def recorded_results():
    """TensorFlow's recorded results (`make_baseline_fixtures.py`)."""
    return json.loads(RECORD_PATH.read_text())


def assert_functional(outputs, recorded):
    """`functional_cases`' outputs on this backend equal TensorFlow's `recorded` ones."""
    import keras

    assert sorted(outputs) == sorted(recorded)
    for name, value in outputs.items():
        parts = value if isinstance(value, tuple) else (value,)
        expected = recorded[name] if isinstance(value, tuple) else [recorded[name]]
        for part, want in zip(parts, expected, strict=True):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(part).astype(np.float64), want,
                                       rtol=1e-5, atol=1e-7, err_msg=name)


def fit_model(name, recorded):
    """The linear model of fit case `name` at TensorFlow's initial weights, compiled; and its data."""
    import keras

    import keras_eql

    cls, kwargs, label_key, width = FIT_CASES[name]
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(width)])
    model.layers[-1].set_weights([np.array(recorded["initial"]["kernel"], np.float32),
                                  np.array(recorded["initial"]["bias"], np.float32)])
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE),
                  loss=getattr(keras_eql, cls)(**kwargs))
    return model, fit_data(label_key)


def assert_fit_final(model, expected):
    """Weights (atol 1e-6) and counts (exact) equal TensorFlow's at the end of the fit."""
    np.testing.assert_allclose(model.layers[-1].kernel.numpy(), expected["kernel"], atol=1e-6)
    np.testing.assert_allclose(model.layers[-1].bias.numpy(), expected["bias"], atol=1e-6)
    np.testing.assert_array_equal(model.loss.sample_counts(), expected["counts"])
