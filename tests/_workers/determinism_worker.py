"""Two identical training runs under `tf.config.experimental.enable_op_determinism()`.

Run in its own process (the setting is global and cannot be undone). For each
loss, trains the same model twice from the same seed with `model.fit`
(shuffled batches, dropout, conv + dense, Adam) and prints one JSON line
`RESULT {...}` holding, per run, the SHA-256 of the statistics' bytes and the
statistics themselves.

Keras 3 turns `jit_compile` off when op determinism is enabled (not every
XLA op is deterministic), so this is the graph path of `fit`.
"""

import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

DETERMINISTIC = "--no-determinism" not in sys.argv
if DETERMINISTIC:
    tf.config.experimental.enable_op_determinism()

import keras  # noqa: E402

import keras_eql  # noqa: E402

C = 6
LOSSES = {
    "sigmoid_eql": lambda: keras_eql.SigmoidEQL(objectness=True),
    "softmax_eql": lambda: keras_eql.SoftmaxEQL(),
    "equalized_focal_loss": lambda: keras_eql.EqualizedFocalLoss(),
    "equalized_quality_focal_loss": lambda: keras_eql.EqualizedQualityFocalLoss(),
}


def train(name):
    keras.utils.set_random_seed(1234)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8, 8, 3)).astype("float32")
    labels = np.minimum(rng.geometric(0.45, size=256) - 1, C).astype("int32")
    if name == "softmax_eql":
        labels = np.minimum(labels, C - 1)
    width = C + 1 if name == "sigmoid_eql" else C
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(width),
    ])
    loss = LOSSES[name]()
    model.compile(keras.optimizers.Adam(1e-2), loss=loss, jit_compile=True)
    model.fit(x, labels, batch_size=32, epochs=2, shuffle=True, verbose=0)
    state = loss.statistics
    arrays = [state.positive.numpy(), state.negative.numpy(), state.steps.numpy()]
    digest = hashlib.sha256(b"".join(np.asarray(a, np.float32).tobytes() for a in arrays))
    return {"sha256": digest.hexdigest(), "jit_compile": bool(model.jit_compile),
            "positive": arrays[0].tolist(), "negative": arrays[1].tolist(),
            "steps": float(arrays[2])}


def main():
    results = {name: [train(name), train(name)] for name in LOSSES}
    print("RESULT " + json.dumps({"deterministic": DETERMINISTIC, "runs": results}), flush=True)


if __name__ == "__main__":
    main()
