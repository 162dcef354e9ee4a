"""How much `GradientStatisticsLogger` adds to a small model's epoch time.

Data: synthetic Fashion-MNIST-sized images (28x28x1, 10 classes) with the
CIFAR-10-LT profile (IF=100, 12,406 rows; batch 128, 97 steps per epoch).
Models, both trained with `SigmoidEQL` under Keras's default `jit_compile`
("auto": off on CPU; `--jit-compile` turns XLA on):

* `cnn` (default): the architecture of the `keras-eql demo` model
  (`keras_eql.cli.small_cnn`, width 24: conv 24 5x5/2 - conv 48 3x3/2 -
  dense 96 - dense 10), rebuilt here so the benchmark stands alone;
* `mlp`: 784-256-10, so small that an epoch takes well under a second,
  which exposes the logger's fixed per-epoch cost (mostly the image).

Variants, interleaved, their order alternating between repetitions so that
machine load hits all alike:

* `baseline`: no callback;
* `logger`: `GradientStatisticsLogger` with TensorBoard, CSV and the three
  panel images, logging at epoch ends (the default);
* `logger_every_50`: the same, plus scalars and CSV rows every
  50 steps;
* `logger_no_image`: TensorBoard scalars and CSV at epoch
  ends, no image (`image_every_n_epochs=None`);
* `logger_csv_only`: no `log_dir` (so no TensorBoard and no image): CSV rows
  and `logs` at epoch ends.

An epoch's time runs from one epoch end to the next (callbacks included),
in wall and process CPU seconds; the first epoch (tracing, compilation,
imports) is reported apart as a one-off. Two overhead ratios per variant:

* end to end: `median(variant epoch) / median(baseline epoch)`;
* in-callback: `1 + median(time inside the logger's hooks per epoch) /
  median(baseline epoch)`. The logger adds work only inside its hooks, so
  this is its cost measured directly, without the run-to-run noise of a
  shared machine that the end-to-end ratio carries.

Usage:
    python benchmarks/callback_overhead.py               # cnn measurement
    python benchmarks/callback_overhead.py --model mlp
    python benchmarks/callback_overhead.py --smoke       # seconds, for CI
"""

import argparse
import os
import platform
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_eql  # noqa: E402
from keras_eql.callbacks import GradientStatisticsLogger  # noqa: E402

NUM_CLASSES = 10
VARIANTS = ("baseline", "logger", "logger_every_50", "logger_no_image", "logger_csv_only")


class EpochTimer(keras.callbacks.Callback):
    """Wall and process CPU seconds per epoch, from the previous epoch end."""

    def on_train_begin(self, logs=None):
        self.durations, self._last = [], (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch, logs=None):
        now = (time.perf_counter(), time.process_time())
        self.durations.append((now[0] - self._last[0], now[1] - self._last[1]))
        self._last = now


class TimedLogger(GradientStatisticsLogger):
    """The logger, also measuring the wall and CPU seconds of its own hooks per epoch."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hook_durations, self._spent = [], [0.0, 0.0]

    def _timed(self, hook, *args):
        wall, cpu = time.perf_counter(), time.process_time()
        hook(*args)
        self._spent[0] += time.perf_counter() - wall
        self._spent[1] += time.process_time() - cpu

    def on_epoch_begin(self, epoch, logs=None):
        self._spent = [0.0, 0.0]
        self._timed(super().on_epoch_begin, epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._timed(super().on_train_batch_begin, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._timed(super().on_epoch_end, epoch, logs)
        self.hook_durations.append(tuple(self._spent))


def long_tailed_images(max_per_class, imbalance, side, seed=0):
    """Noisy class templates with counts `n_i = int(n_max (1/IF)^(i/(C-1)))`."""
    rng = np.random.default_rng(seed)
    counts = [int(max_per_class * (1.0 / imbalance) ** (i / (NUM_CLASSES - 1))) for i in range(NUM_CLASSES)]
    labels = np.repeat(np.arange(NUM_CLASSES), counts)
    templates = rng.normal(size=(NUM_CLASSES, side, side, 1)).astype("float32")
    images = templates[labels] + rng.normal(size=(labels.size, side, side, 1)).astype("float32")
    order = rng.permutation(labels.size)
    return images[order], labels[order].astype("int32"), counts


def build_model(kind, input_shape):
    layers = keras.layers
    if kind == "cnn":
        body = [layers.Conv2D(24, 5, strides=2, padding="same", activation="relu"),
                layers.Conv2D(48, 3, strides=2, padding="same", activation="relu"),
                layers.Flatten(), layers.Dense(96, activation="relu")]
    elif kind == "mlp":
        body = [layers.Flatten(), layers.Dense(256, activation="relu")]
    else:  # the smoke run
        body = [layers.Flatten(), layers.Dense(8, activation="relu")]
    return keras.Sequential([keras.Input(input_shape), *body, layers.Dense(NUM_CLASSES)])


def run(variant, data, args, log_root):
    images, labels, counts = data
    keras.utils.set_random_seed(0)
    model = build_model(args.model, images.shape[1:])
    model.compile(keras.optimizers.SGD(0.01), loss=keras_eql.SigmoidEQL(num_classes=NUM_CLASSES),
                  jit_compile=args.jit_compile)
    timer, logger = EpochTimer(), None
    callbacks = [timer]
    if variant != "baseline":
        directory = tempfile.mkdtemp(dir=log_root)
        logger = TimedLogger(
            log_dir=None if variant == "logger_csv_only" else directory,
            csv_path=os.path.join(directory, "stats.csv"), class_counts=counts,
            every_n_steps=50 if variant == "logger_every_50" else None,
            image_every_n_epochs=None if variant == "logger_no_image" else 1)
        callbacks = [logger, timer]  # the timer last: it sees the logger's epoch-end work
    model.fit(images, labels, batch_size=args.batch_size, epochs=args.epochs, verbose=0, callbacks=callbacks)
    return timer.durations, (logger.hook_durations if logger else [(0.0, 0.0)] * args.epochs)


def describe_machine():
    cpu = platform.processor() or "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return (f"{cpu}, {os.cpu_count()} logical cores; Python {platform.python_version()}, "
            f"TensorFlow {tf.__version__}, Keras {keras.__version__}")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny run that only checks the script works")
    parser.add_argument("--model", choices=("cnn", "mlp"), default="cnn")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions of every variant")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per fit; the first is the one-off")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--jit-compile", action="store_true", help="compile the train step with XLA")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.epochs < 2 or args.batch_size < 1:
        parser.error(f"need repeats >= 1, epochs >= 2, batch size >= 1; got "
                     f"{args.repeats}, {args.epochs}, {args.batch_size}")
    args.jit_compile = True if args.jit_compile else "auto"
    if args.smoke:  # seconds, not a measurement: tiny model and data
        args.model, args.repeats, args.epochs = "smoke", 1, 2
        data = long_tailed_images(max_per_class=40, imbalance=10, side=4)
    else:
        data = long_tailed_images(max_per_class=5000, imbalance=100, side=28)

    print(describe_machine())
    print(f"model {args.model}, {len(data[1])} rows, batch {args.batch_size}, "
          f"jit_compile={args.jit_compile}, {args.epochs} epochs x {args.repeats} repetitions")
    epochs = {variant: [] for variant in VARIANTS}  # (wall, cpu) of the epochs after the first
    hooks = {variant: [] for variant in VARIANTS}
    first = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as log_root:
        for repeat in range(args.repeats):
            for variant in VARIANTS if repeat % 2 == 0 else VARIANTS[::-1]:
                durations, hook_durations = run(variant, data, args, log_root)
                first[variant].append(durations[0][0])
                epochs[variant].extend(durations[1:])
                hooks[variant].extend(hook_durations[1:])
                print(f"  repeat {repeat} {variant:16s} epoch wall/cpu s "
                      + " ".join(f"{wall:.2f}/{cpu:.2f}" for wall, cpu in durations), flush=True)

    def median(values, index):
        return statistics.median(value[index] for value in values)

    base_wall, base_cpu = median(epochs["baseline"], 0), median(epochs["baseline"], 1)
    print(f"baseline         median epoch {base_wall:.3f} s wall, {base_cpu:.3f} s cpu, "
          f"first epoch {statistics.median(first['baseline']):.3f} s wall")
    for variant in VARIANTS[1:]:
        wall, cpu = median(epochs[variant], 0), median(epochs[variant], 1)
        hook_wall, hook_cpu = median(hooks[variant], 0), median(hooks[variant], 1)
        print(f"{variant:16s} end-to-end overhead ratio {wall / base_wall:.3f} wall, "
              f"{cpu / base_cpu:.3f} cpu; "
              f"in-callback {hook_wall * 1e3:.0f} ms wall, {hook_cpu * 1e3:.0f} ms cpu per epoch: "
              f"overhead ratio {1 + hook_wall / base_wall:.3f} wall, {1 + hook_cpu / base_cpu:.3f} cpu; "
              f"first epoch {statistics.median(first[variant]):.3f} s wall")


if __name__ == "__main__":
    main()
