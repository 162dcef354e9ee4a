"""Run by test_distribute.py in its own process: TF's logical devices can be
configured only once per process. Trains each loss on one device and under
MirroredStrategy on 2 logical CPUs with the same global batches, and prints a
JSON verdict per loss. With the argument `varying_rows` it runs only
`golden_varying_rows`, in a process of its own: strategies of different
collective shapes in one process can collide on their instance keys (a
shape-mismatch abort)."""

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
import keras_eql  # noqa: E402
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


def golden_varying_rows(strategy):
    """Sigmoid-EQL's golden steps with a varying number of counted rows, the
    ignored rows sorted onto replica 0 first (uneven; at 50 % it counts none)."""
    golden = np.load(os.path.join(os.path.dirname(__file__), "golden",
                                  "golden_sigmoid_eql_varying_rows.npz"))
    with strategy.scope():
        loss = keras_eql.SigmoidEQL(num_classes=golden["logits"].shape[-1] - 1, objectness=True)

    def replica_step(logits, labels):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = loss(labels, logits)
        return tape.gradient(value, logits)

    step = tf.function(lambda logits, labels: strategy.run(replica_step, args=(logits, labels)))
    worst = {"positive": 0.0, "negative": 0.0, "ratio": 0.0}
    replicas = strategy.num_replicas_in_sync
    for t in range(golden["logits"].shape[0]):
        order = np.argsort(golden["labels"][t] != -1, kind="stable")  # ignored rows first
        shards = [np.array_split(golden[key][t][order], replicas) for key in ("logits", "labels")]
        logits = strategy.experimental_distribute_values_from_function(
            lambda context: tf.constant(shards[0][context.replica_id_in_sync_group], tf.float32))
        labels = strategy.experimental_distribute_values_from_function(
            lambda context: tf.constant(shards[1][context.replica_id_in_sync_group], tf.int32))
        step(logits, labels)
        stats = loss.gradient_statistics()
        for key, golden_key in (("positive", "pos_grad"), ("negative", "neg_grad"), ("ratio", "pos_neg")):
            expected = golden[golden_key][t]
            relative = np.abs(stats[key] - expected) / np.maximum(np.abs(expected), 1e-12)
            worst[key] = max(worst[key], float(np.max(np.where(expected != 0, relative, np.abs(stats[key])))))
    return {"max_relative": worst, "steps": float(loss.statistics.step_count())}


def bad_label_gathering(strategy):
    """`first_bad_over_replicas` when only replica 1 met a bad value (7.0)."""
    from keras_eql._targets import first_bad_over_replicas

    def replica_fn():
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        return first_bad_over_replicas(tf.equal(replica, 1), tf.constant(7.0) + 0.0 * tf.cast(replica, tf.float32))

    any_bad, value = strategy.run(tf.function(replica_fn))
    return {"any_bad": [bool(v.numpy()) for v in strategy.experimental_local_results(any_bad)],
            "value": [float(v.numpy()) for v in strategy.experimental_local_results(value)]}


if sys.argv[1:] == ["varying_rows"]:
    strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
    report = golden_varying_rows(strategy)
    report["bad_label_gathering"] = bad_label_gathering(strategy)
    print("REPORT " + json.dumps(report))
    sys.exit(0)

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
