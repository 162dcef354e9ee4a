"""Run by test_distribute.py in its own process: TF's logical devices can be
configured only once per process. Trains each loss on one device and under
MirroredStrategy on 2 logical CPUs with the same global batches, and prints a
JSON verdict per loss."""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from helpers import LOSS_KINDS, NUM_CLASSES, long_tailed_data, make_loss, make_model  # noqa: E402


def train(kind, strategy, lazy):
    features, labels = long_tailed_data(kind, rows=64)
    with strategy.scope():
        model = make_model()
        loss = make_loss(kind, num_classes=None if lazy else NUM_CLASSES)
        # Keras itself cannot run XLA under MirroredStrategy (tf-mechanics Q2).
        model.compile(keras.optimizers.SGD(0.1), loss=loss, jit_compile=False)
    model.fit(features, labels, batch_size=32, epochs=2, shuffle=False, verbose=0)
    return model, loss


report = {}
for kind in LOSS_KINDS:
    for lazy in (False, True):
        reference_model, reference = train(kind, tf.distribute.get_strategy(), lazy)
        model, loss = train(kind, tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"]), lazy)
        stats, expected = loss.gradient_statistics(), reference.gradient_statistics()
        report[f"{kind}/lazy={lazy}"] = {
            "distributed": isinstance(loss.statistics.positive, tf.distribute.DistributedValues),
            "steps": float(loss.statistics.steps.numpy()),
            "max_relative": {
                key: float(np.max(np.abs(stats[key] - expected[key]) / (np.abs(expected[key]) + 1e-12)))
                for key in ("positive", "negative", "ratio")},
            "max_weight_difference": max(
                float(np.max(np.abs(a.numpy() - b.numpy())))
                for a, b in zip(model.weights, reference_model.weights)),
            "replica_copies_equal": all(
                np.array_equal(v.numpy(), loss.statistics.positive.values[0].numpy())
                for v in loss.statistics.positive.values),
        }

# A loss whose statistics were made outside the strategy must refuse to train.
strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
outside = make_loss("efl", num_classes=NUM_CLASSES)
with strategy.scope():
    model = make_model()
    model.compile(keras.optimizers.SGD(0.1), loss=outside)
try:
    model.fit(*long_tailed_data("efl", rows=32), batch_size=32, verbose=0)
    report["outside_scope_error"] = None
except ValueError as error:
    report["outside_scope_error"] = str(error)

print("REPORT " + json.dumps(report))
