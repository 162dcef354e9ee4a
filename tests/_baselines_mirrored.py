"""Subprocess of test_baselines: counting losses under MirroredStrategy on 2 CPUs.

TensorFlow configures devices once per process, before any op, hence a
separate process. Prints one JSON line: for SeesawLoss and LogitAdjustedLoss
(online counts), the counts after `fit` on 2 replicas and on one device, the
exact expected counts, and how far the trained kernels are apart.
"""

import json

import tensorflow as tf

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_eql.baselines import LogitAdjustedLoss, SeesawLoss  # noqa: E402

CLASSES, FEATURES, EPOCHS = 4, 6, 2


def train(strategy, make_loss, x, y, initial_weights):
    with strategy.scope():
        model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(CLASSES)])
        model.set_weights(initial_weights)
        loss = make_loss()
        # Keras itself cannot run XLA under MirroredStrategy (tf-mechanics §2).
        model.compile(keras.optimizers.SGD(0.5), loss=loss, jit_compile=False)
    model.fit(x, y, batch_size=16, epochs=EPOCHS, shuffle=False, verbose=0)
    return loss.sample_counts(), model.get_weights()[0]


def main():
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, FEATURES)).astype(np.float32)
    y = rng.choice(CLASSES, size=64, p=[0.55, 0.25, 0.15, 0.05])
    initial = [rng.normal(size=(FEATURES, CLASSES)).astype(np.float32) * 0.3,
               np.zeros(CLASSES, np.float32)]
    report = {"replicas": mirrored.num_replicas_in_sync}
    losses = {
        "seesaw": lambda: SeesawLoss(),  # counts created lazily, in the strategy's scope
        "logit_adjusted": lambda: LogitAdjustedLoss(num_classes=CLASSES, tau=1.0),  # eagerly
    }
    for name, make_loss in losses.items():
        counts, kernel = train(mirrored, make_loss, x, y, initial)
        single_counts, single_kernel = train(tf.distribute.get_strategy(), make_loss, x, y, initial)
        report[name] = {
            "mirrored_counts": counts.tolist(),
            "single_counts": single_counts.tolist(),
            "expected_counts": (EPOCHS * np.bincount(y, minlength=CLASSES)).tolist(),
            "kernel_max_abs_diff": float(np.abs(kernel - single_kernel).max()),
        }
    outside = LogitAdjustedLoss(num_classes=CLASSES)  # built outside the scope: must be refused
    try:
        train(mirrored, lambda: outside, x, y, initial)
        report["outside_scope_error"] = ""
    except ValueError as error:
        report["outside_scope_error"] = str(error)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
