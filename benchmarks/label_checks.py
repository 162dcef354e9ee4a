"""What the XLA-proof label checks cost a demo training step.

Under `jit_compile=True` every keras_eql loss turns a step with a bad label
into a NaN loss with zero gradient and records the value (`_targets`): one
reduction of the labels, one `tf.where` on the row losses and one scalar
variable write per step. This script times the demo's training step (the
`small_cnn` of `keras-eql demo` with Softmax-EQL, batch 128, Adam, XLA) with
those checks and with them compiled out (the "off" variant is traced with
`nan_unless` and `BadLabelMonitor.record` replaced by no-ops), interleaved,
fresh labels every call, and prints the ratio. The demo's epoch is this step
times the number of batches plus the input pipeline, so the step ratio
bounds the epoch's.

    python benchmarks/label_checks.py            # ~1 minute
    python benchmarks/label_checks.py --smoke    # a few calls, for the tests
"""

import argparse
import contextlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_eql  # noqa: E402
from keras_eql import _targets, cli  # noqa: E402
from _timing import interleaved, machine, median  # noqa: E402


@contextlib.contextmanager
def _checks_compiled_out():
    nan_unless, record = _targets.nan_unless, _targets.BadLabelMonitor.record
    _targets.nan_unless = lambda ok, losses: losses
    _targets.BadLabelMonitor.record = lambda self, verdict: tf.no_op()
    try:
        yield
    finally:
        _targets.nan_unless, _targets.BadLabelMonitor.record = nan_unless, record


def _train_step(batch):
    model = cli.small_cnn(10, seed=0)
    model.compile(keras.optimizers.Adam(1e-3), loss=keras_eql.SoftmaxEQL(), jit_compile=True)
    model.optimizer.build(model.trainable_variables)
    model.make_train_function()
    return model.train_function, model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    repeats, warmup = (3, 1) if args.smoke else (args.repeats, 3)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, args.batch_size, 28, 28, 1)).astype("float32") / 255.0
    labels = rng.integers(0, 10, (8, args.batch_size)).astype("int32")
    steps = {}
    for name in ("checks", "no_checks"):
        train_function, model = _train_step(args.batch_size)
        with _checks_compiled_out() if name == "no_checks" else contextlib.nullcontext():
            batch = iter([(tf.constant(images[0]), tf.constant(labels[0]))])
            train_function(batch)  # traced and compiled here
        steps[name] = (lambda function: lambda x, y: function(iter([(x, y)])))(train_function)
    arguments = lambda name, index: (tf.constant(images[index % 8]), tf.constant(labels[index % 8]))
    wall, cpu = interleaved(steps, arguments, repeats=repeats, warmup=warmup)
    result = {
        "machine": machine(),
        "median_ms": {name: {"wall": 1e3 * median(wall[name]), "cpu": 1e3 * median(cpu[name])}
                      for name in steps},
    }
    result["ratio"] = {clock: result["median_ms"]["checks"][clock] / result["median_ms"]["no_checks"][clock]
                       for clock in ("wall", "cpu")}
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    print(f"demo train step with / without label checks: wall {result['ratio']['wall']:.3f}, "
          f"CPU {result['ratio']['cpu']:.3f}")
    return result


if __name__ == "__main__":
    main()
