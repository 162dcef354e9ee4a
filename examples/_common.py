"""Command-line flags, distribution strategies, training and reporting shared by the examples.

Every example accepts `--strategy {default,mirrored,multiworker,tpu,data_parallel}`
(the first four are `tf.distribute`, for KERAS_BACKEND=tensorflow;
`data_parallel` is `keras.distribution.DataParallel`, for JAX),
`--jit-compile/--no-jit-compile` (on by default), `--epochs`, `--seed`,
`--output` (a JSON file for the results; by default `outputs/<example>.json`
in the repository, a folder git ignores) and `--smoke` (a few steps on tiny
data, used by the tests). The examples on the synthetic long-tailed set
(`_synthetic.py`) also share `--methods`, `--scale`,
`--val-images-per-category`, `--batch-size` and `--learning-rate`
(`synthetic_parser`, `parse_synthetic_args`), their training plumbing
(`start_method`, `shuffled_batches`, `warmup_cosine_adam`, `timed_fit`) and
their reporting (`statistics_summary`, `grouped_metric`, `report`: a table
on stdout and `{"args", ..., "results"}` JSON in `--output`).
"""

import argparse
import contextlib
import json
import os
import time

import keras
import numpy as np

from keras_eql.cli import imbalance_factor, positive_float, positive_int

# mirrored, multiworker, tpu: `tf.distribute`; data_parallel: Keras's own `keras.distribution` (JAX).
STRATEGIES = ("default", "mirrored", "multiworker", "tpu", "data_parallel")
# Default home of the results: ignored by git (.gitignore: /outputs/).
OUTPUT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "outputs")
DOCS_HINT = ("Keras 3.15 `fit` fails under MultiWorkerMirroredStrategy before any loss code runs "
             "(keras-team/keras#20585). Use examples/multiworker_ctl.py, which trains the "
             "keras_eql losses with a custom training loop under that strategy")

__all__ = ["STRATEGIES", "OUTPUT_DIR", "backend", "default_output", "add_common_arguments",
           "imbalance_factor", "positive_float", "positive_int", "resolve_strategy", "scope", "write_results", "print_table",
           "lvis_groups", "group_means", "synthetic_parser", "parse_synthetic_args",
           "category_image_counts", "start_method", "shuffled_batches", "warmup_cosine_adam",
           "ShuffledBatches", "timed_fit", "statistics_summary", "grouped_metric", "report"]


def backend():
    """The Keras backend (`KERAS_BACKEND`) the example runs under."""
    return keras.backend.backend()


def default_output(example_file):
    """`outputs/<example>.json` in the repository, the default `--output`.

    Args:
        example_file: the example's `__file__`.

    Example:
        >>> os.path.relpath(default_output("examples/detection_lt.py"), os.path.dirname(OUTPUT_DIR))
        'outputs/detection_lt.json'
    """
    name = os.path.splitext(os.path.basename(example_file))[0]
    return os.path.join(OUTPUT_DIR, f"{name}.json")


def add_common_arguments(parser, *, epochs, example_file):
    """Add the flags every example shares.

    Args:
        parser: an `argparse.ArgumentParser`.
        epochs: default number of epochs of a full run.
        example_file: the example's `__file__` (names the default `--output`).

    Returns:
        The parser.
    """
    parser.add_argument("--strategy", choices=STRATEGIES, default="default",
                        help="distribution: mirrored, multiworker, tpu (tf.distribute, TensorFlow), "
                             "data_parallel (keras.distribution.DataParallel over every local "
                             "device, JAX)")
    parser.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=True,
                        help="compile the train step with XLA (must be explicit on CPU)")
    parser.add_argument("--epochs", type=positive_int, default=epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true",
                        help="a few steps on tiny data (the tests run this)")
    parser.add_argument("--output", default=default_output(example_file),
                        help="write the results as JSON here (default: %(default)s, ignored by git)")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="Keras fit verbosity (1: progress bars)")
    return parser


def synthetic_parser(description, *, example_file, epochs, methods, default_methods=None, batch_size,
                     learning_rate):
    """A parser with the common flags and those of the synthetic long-tailed examples.

    Args:
        description: the example's module docstring (shown by `--help`).
        example_file: the example's `__file__` (names the default `--output`).
        epochs: default number of epochs of a full run.
        methods: every method the example can train.
        default_methods: the methods trained without `--methods` (all of them
            when None).
        batch_size: default `--batch-size`.
        learning_rate: default (peak) `--learning-rate`.

    Returns:
        An `argparse.ArgumentParser`; the example adds its own flags, then
        calls `parse_synthetic_args`.
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, epochs=epochs, example_file=example_file)
    parser.add_argument("--methods", default=",".join(default_methods or methods),
                        help=f"comma-separated subset of {','.join(methods)}")
    parser.add_argument("--scale", type=positive_float, default=1.0,
                        help="training-set size factor (1.0: about 880 images)")
    parser.add_argument("--val-images-per-category", type=positive_int, default=12)
    parser.add_argument("--batch-size", type=positive_int, default=batch_size)
    parser.add_argument("--learning-rate", type=positive_float, default=learning_rate)
    return parser


def parse_synthetic_args(parser, argv, methods, *, smoke_scale, smoke_batch_size):
    """Parse the flags of a `synthetic_parser`, check `--methods`, apply `--smoke`.

    Args:
        parser: from `synthetic_parser`, with the example's own flags added.
        argv: the arguments (None: `sys.argv`).
        methods: every method the example can train.
        smoke_scale: `--scale` of a smoke run.
        smoke_batch_size: `--batch-size` of a smoke run.

    Returns:
        The parsed flags; `args.methods` is a list of method names.

    Raises:
        SystemExit: an unknown or empty `--methods` (argparse's exit code 2).
    """
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in methods]
    if unknown or not args.methods:
        parser.error(f"--methods: unknown method(s) {unknown or args.methods!r}; choose from {', '.join(methods)}")
    if args.smoke:
        # One epoch on a few percent of the training set, one validation image per category.
        args.scale, args.val_images_per_category, args.epochs, args.batch_size = smoke_scale, 1, 1, smoke_batch_size
    return args


def _static_shapes_under_torch_compile():
    """Compile one graph per batch shape under PyTorch, as XLA does.

    torch.compile re-traces a step whose shapes changed (the last, smaller
    batch; evaluation) with symbolic sizes, and torch 2.13's inductor fails
    to lower Keras's "same"-padded strided convolution at symbolic sizes
    (`LoweringException: ValueRangeError: Invalid ranges [0:-1]`, measured
    on detection_lt.py). With static shapes each new shape compiles anew.
    """
    import torch

    torch._dynamo.config.automatic_dynamic_shapes = False


def resolve_strategy(name, jit_compile):
    """The distribution for a `--strategy` value.

    Args:
        name: one of `STRATEGIES`.
        jit_compile: the requested XLA setting.

    Returns:
        `(strategy, jit_compile)`: `strategy` is None for `default`, a
        `tf.distribute.Strategy` for `mirrored` and `tpu`, and for
        `data_parallel` the `keras.distribution.DataParallel` over every
        local device, also set as Keras's global distribution (so that `fit`
        shards each batch over the devices). `jit_compile` is turned off
        under `mirrored`, where Keras 3.15 places the replicas' variables on
        devices XLA cannot reach (tf-mechanics.md, section 2).

    Raises:
        SystemExit: `multiworker` (Keras `fit` is broken there), `tpu`
            without a TPU, a `tf.distribute` strategy under another backend
            than TensorFlow, or `data_parallel` under TensorFlow, with a
            message saying what to do instead.
    """
    if jit_compile and backend() == "torch":
        _static_shapes_under_torch_compile()
    if name == "default":
        return None, jit_compile
    if name not in STRATEGIES:
        raise SystemExit(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}.")
    if name == "data_parallel":
        if backend() != "jax":
            raise SystemExit(
                f"--strategy data_parallel is keras.distribution.DataParallel, which Keras runs "
                f"under KERAS_BACKEND=jax; under {backend()} use --strategy mirrored (one host) "
                "or tpu.")
        distribution = keras.distribution.DataParallel()
        keras.distribution.set_distribution(distribution)
        print(f"DataParallel over {len(distribution.device_mesh.devices.flat)} device(s).")
        return distribution, jit_compile
    if backend() != "tensorflow":
        raise SystemExit(
            f"--strategy {name} is a tf.distribute strategy, for KERAS_BACKEND=tensorflow; under "
            f"{backend()} use --strategy data_parallel (keras.distribution) or default.")
    import tensorflow as tf

    if name == "mirrored":
        if jit_compile:
            print("Note: --strategy mirrored runs without XLA (Keras 3.15 cannot combine "
                  "jit_compile with MirroredStrategy); pass --no-jit-compile to silence this.")
        return tf.distribute.MirroredStrategy(), False
    if name == "multiworker":
        raise SystemExit(f"--strategy multiworker is not supported by this fit()-based example. {DOCS_HINT}.")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError, RuntimeError) as error:
        raise SystemExit(f"--strategy tpu: no TPU found ({error}). Run on a TPU VM or pick "
                         "--strategy default.") from None
    return tf.distribute.TPUStrategy(resolver), jit_compile


def scope(strategy):
    """`strategy.scope()`, or a no-op context when `strategy` is None.

    A `keras.distribution.Distribution` has a `scope()` too (it is also the
    global distribution, see `resolve_strategy`).
    """
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def category_image_counts(split, num_classes):
    """Training images per category of a `_synthetic` split.

    Args:
        split: a `_synthetic.detection_split` dict (its COCO ids are `k + 1`).
        num_classes: categories `C`.

    Returns:
        An int array `(C,)`, indexed by category id `0..C-1`.
    """
    from keras_eql.metrics import images_per_category

    counts = images_per_category(split["coco"])
    return np.array([counts[k + 1] for k in range(num_classes)])


def start_method(method, seed):
    """Print the method's header and reseed Keras, TensorFlow and NumPy.

    Every method then starts from the same initial weights, so the methods
    differ only by their loss.
    """
    import keras

    print(f"\n=== {method} ===")
    keras.utils.set_random_seed(seed)


def shuffled_batches(inputs, targets, batch_size, seed):
    """Shuffled full batches for `fit`, and the batches per epoch.

    The last partial batch is dropped, so every step has the same static
    shape: one XLA program, as on a TPU. Under TensorFlow a `tf.data`
    pipeline (reshuffled every epoch, prefetching); under another backend a
    `keras.utils.PyDataset` of NumPy batches, reshuffled every epoch from
    `seed` (so a JAX host needs no TensorFlow).

    Args:
        inputs: an array of examples.
        targets: an array, or a dict of arrays, one row per example.
        batch_size: examples per batch.
        seed: shuffle seed.

    Returns:
        `(dataset, steps_per_epoch)`; `steps_per_epoch` is at least 1.
    """
    if backend() != "tensorflow":
        dataset = ShuffledBatches(inputs, targets, batch_size, seed)
        return dataset, len(dataset)
    import tensorflow as tf

    count = len(tf.nest.flatten(targets)[0])
    dataset = (tf.data.Dataset.from_tensor_slices((inputs, targets)).shuffle(count, seed=seed)
               .batch(batch_size, drop_remainder=True).prefetch(2))
    return dataset, max(1, count // batch_size)


class ShuffledBatches(keras.utils.PyDataset):
    """NumPy `(inputs, targets)` batches in a new seeded order every epoch, full batches only.

    Args:
        inputs: an array of examples.
        targets: an array, or a dict of arrays, one row per example.
        batch_size: examples per batch.
        seed: seed of the epochs' orders.
    """

    def __init__(self, inputs, targets, batch_size, seed):
        super().__init__()
        self.inputs, self.targets, self.batch_size = inputs, targets, int(batch_size)
        self.count = len(inputs)
        self._rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self):
        return max(1, self.count // self.batch_size)

    def __getitem__(self, index):
        rows = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        if isinstance(self.targets, dict):
            return self.inputs[rows], {key: value[rows] for key, value in self.targets.items()}
        return self.inputs[rows], self.targets[rows]

    def on_epoch_end(self):
        self._order = self._rng.permutation(self.count)


def warmup_cosine_adam(learning_rate, steps, warmup_steps, **adam_options):
    """Adam with a linear warm-up from 0 to `learning_rate`, then a cosine decay to 0.

    Create it under the strategy's scope: its slots are variables.

    Args:
        learning_rate: the peak rate, reached after the warm-up.
        steps: training steps of the whole run (warm-up included).
        warmup_steps: length of the warm-up (at least 1 is used).
        **adam_options: more `keras.optimizers.Adam` arguments
            (e.g. `global_clipnorm`).

    Returns:
        A `keras.optimizers.Adam`.
    """
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, warmup_target=learning_rate, warmup_steps=max(1, warmup_steps))
    return keras.optimizers.Adam(schedule, **adam_options)


def timed_fit(model, *args, **kwargs):
    """Run `model.fit(*args, **kwargs)`; returns its wall-clock seconds, to 0.1 s."""
    started = time.perf_counter()
    model.fit(*args, **kwargs)
    return round(time.perf_counter() - started, 1)


def statistics_summary(loss, keys):
    """What a keras_eql loss accumulated while training, for the results JSON.

    Args:
        loss: the trained loss; one without `gradient_statistics` (a
            baseline, or None) gives an empty dict.
        keys: the `gradient_statistics()` entries to report, e.g.
            `("ratio",)`.

    Returns:
        `{"statistics_steps": float, key: [per-class floats], ...}`, or `{}`.
    """
    if not hasattr(loss, "gradient_statistics"):
        return {}
    statistics = loss.gradient_statistics()
    summary = {"statistics_steps": float(loss.statistics.steps.numpy())}
    summary.update({key: statistics[key].tolist() for key in keys})
    return summary


def print_table(results, columns, title):
    """Print `{method: {column: value in [0, 1]}}` as percentages (NaN as n/a).

    Args:
        results: one dict of metrics per method.
        columns: the metric keys to print, in order.
        title: a line printed above the table.

    Example:
        >>> print_table({"efl": {"AP": 0.29}}, ["AP"], "AP (%)")  # doctest: +NORMALIZE_WHITESPACE
        <BLANKLINE>
        AP (%)
        method                 AP
        efl                  29.0
    """
    print(f"\n{title}")
    print(f"{'method':<16}" + "".join(f"{c:>9}" for c in columns))
    for method, row in results.items():
        cells = "".join(f"{100 * row[c]:>9.1f}" if row.get(c) == row.get(c) else f"{'n/a':>9}" for c in columns)
        print(f"{method:<16}" + cells)


def write_results(path, results):
    """Write `results` as JSON to `path`; NaN becomes null (an empty group).

    Args:
        path: the JSON file, or None to write nothing.
        results: a JSON-serialisable dict (floats may be NaN).
    """
    if path is None:
        return

    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, float) and value != value:
            return None
        return value

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w") as handle:
        json.dump(clean(results), handle, indent=2)
    print(f"Wrote {path}")


def grouped_metric(name, per_class, groups):
    """Group means of a per-class metric under the keys `<name>_r`, `<name>_c`, `<name>_f`.

    Args:
        name: the metric's name, e.g. `"mIoU"`.
        per_class: one value per class (see `group_means`).
        groups: `{name: [class ids]}`, e.g. from `lvis_groups`.

    Returns:
        `{f"{name}_{first letter of the group}": mean}`.

    Example:
        >>> grouped_metric("AP", [1.0, 0.5], {"rare": [0], "common": [1]})
        {'AP_r': 1.0, 'AP_c': 0.5}
    """
    return {f"{name}_{group[0]}": value for group, value in group_means(per_class, groups).items()}


def report(args, results, columns, title, **extra):
    """Print the results table and write the run's JSON to `--output`.

    Args:
        args: the parsed flags (written under `"args"`).
        results: `{method: {metric: value}}`.
        columns: the metrics of the table (see `print_table`).
        title: the table's title.
        **extra: more top-level JSON entries, written between `"args"` and
            `"results"` (e.g. `groups=...`).

    Returns:
        `results`, for `main` to return.
    """
    print_table(results, columns, title)
    write_results(args.output, {"args": vars(args), **extra, "results": results})
    return results


def lvis_groups(image_counts):
    """LVIS frequency groups of categories from their training image counts.

    Args:
        image_counts: training images per category (index = category id).

    Returns:
        `{"rare": [...], "common": [...], "frequent": [...]}`: at most 10,
        11-100 and more than 100 images, as `keras_eql.metrics` uses.

    Example:
        >>> lvis_groups([500, 40, 3])
        {'rare': [2], 'common': [1], 'frequent': [0]}
    """
    counts = [int(c) for c in image_counts]
    return {"rare": [k for k, c in enumerate(counts) if c <= 10],
            "common": [k for k, c in enumerate(counts) if 10 < c <= 100],
            "frequent": [k for k, c in enumerate(counts) if c > 100]}


def group_means(per_class, groups):
    """Mean of a per-class metric over each group's classes.

    Args:
        per_class: one value per class; NaN (no sample) is left out.
        groups: `{name: [class ids]}`, e.g. from `lvis_groups`.

    Returns:
        `{name: mean}`, NaN for a group without a finite value.

    Example:
        >>> group_means([1.0, 0.5, float("nan")], {"rare": [2], "common": [0, 1]})
        {'rare': nan, 'common': 0.75}
    """
    per_class = np.asarray(per_class, np.float64)
    means = {}
    for name, members in groups.items():
        values = per_class[members] if members else np.array([])
        values = values[np.isfinite(values)]
        means[name] = float(values.mean()) if values.size else float("nan")
    return means
