"""keras_eql losses inside a tf_keras (Keras 2 API) model's `fit`.

Run with TF_USE_LEGACY_KERAS=1 (then `tf.keras` is tf_keras). For each loss,
trains the same tiny model (same initial weights, same batches, SGD) once
with tf_keras `fit` and once with Keras 3 `fit`, and prints one JSON line
`RESULT {...}` with both runs' statistics and weights.

A Keras 3 loss object is a plain callable to tf_keras (wrapped in its
`LossFunctionWrapper`): it reduces the batch itself, so tf_keras'
`sample_weight` would scale the reduced loss, not the rows; pass per-row
weights through a Keras 3 model, or not at all, with tf_keras.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

import keras  # noqa: E402  (Keras 3, which keras_eql needs)
import keras_eql  # noqa: E402

C = 5
LOSSES = {
    "sigmoid_eql": lambda: keras_eql.SigmoidEQL(num_classes=C),
    "softmax_eql": lambda: keras_eql.SoftmaxEQL(num_classes=C),
    "equalized_focal_loss": lambda: keras_eql.EqualizedFocalLoss(num_classes=C),
    "equalized_quality_focal_loss": lambda: keras_eql.EqualizedQualityFocalLoss(num_classes=C),
}


def data(name):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 8)).astype("float32")
    top = C if name == "softmax_eql" else C + 1
    y = rng.integers(0, top, size=64).astype("int32")
    return x, y


def keras3_model(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(C)])


def tf_keras_model():
    return tf_keras.Sequential([tf_keras.Input((8,)), tf_keras.layers.Dense(16, activation="relu"),
                                tf_keras.layers.Dense(C)])


def summary(model, loss):
    statistics = loss.gradient_statistics()
    return {"positive": statistics["positive"].tolist(),
            "negative": statistics["negative"].tolist(),
            "steps": float(loss.statistics.steps.numpy()),
            "weights": [np.asarray(w).ravel().tolist() for w in model.get_weights()]}


def main():
    results = {"tf.keras": tf.keras.__name__, "tf_keras": tf_keras.__version__,
               "keras": keras.__version__, "legacy_env": os.environ.get("TF_USE_LEGACY_KERAS"),
               "runs": {}}
    results["runs"]["jit_compile=False"] = run(False, LOSSES)
    # XLA compiles are slow on CPU; the capture mechanism is shared, one loss suffices.
    results["runs"]["jit_compile=True"] = run(True, {"equalized_focal_loss": LOSSES["equalized_focal_loss"]})
    print("RESULT " + json.dumps(results), flush=True)


def run(jit, losses):
    out = {}
    for name, make in losses.items():
        x, y = data(name)
        reference = keras3_model(seed=7)
        initial = reference.get_weights()
        legacy = tf_keras_model()
        legacy.set_weights(initial)

        loss = make()
        legacy.compile(optimizer=tf_keras.optimizers.SGD(0.2), loss=loss, jit_compile=jit)
        history = legacy.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        legacy_run = summary(legacy, loss)
        legacy_run["loss_history"] = history.history["loss"]

        loss = make()
        reference.compile(optimizer=keras.optimizers.SGD(0.2), loss=loss, jit_compile=jit)
        history = reference.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        keras3_run = summary(reference, loss)
        keras3_run["loss_history"] = history.history["loss"]
        out[name] = {"tf_keras": legacy_run, "keras3": keras3_run,
                     "legacy_model": type(legacy).__module__}
    return out


if __name__ == "__main__":
    main()
