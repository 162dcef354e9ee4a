"""`keras-eql demo`: Softmax-EQL, cross-entropy and two prior-based baselines on Fashion-MNIST-LT.

The demo subsamples Fashion-MNIST's training set with the exponential
profile (imbalance factor 100 by default: 6000 images of class 0 down to 60
of class 9), keeps the balanced test set, trains the same small CNN once per
loss with `jit_compile=True` (cross-entropy, Softmax-EQL, the logit-adjusted
loss and Balanced Softmax), and reports overall accuracy and the mean
per-class accuracy of the head (classes 0-3), medium (4-6) and tail (7-9)
groups, see `keras_eql.data.head_medium_tail`. Into `--output-dir` it writes
`results.json`, `details.json` (counts, groups, per-class accuracy, timings,
data source, statistics), `gradient_statistics.png` (Tan et al., Fig. 1:
Softmax-EQL's statistics beside cross-entropy's), `statistics.csv` (the
`GradientStatisticsLogger` CSV of both, four times per epoch: Fig. 2 with
`keras_eql.plot_ratio_history`) and TensorBoard logs under
`tensorboard/<method>/`: Keras's, the gradient statistics' group ratios and
panels, and the accuracy per group on a fixed balanced part of the test set
after every epoch.

The pieces (`small_cnn`, `make_loss`, `train_and_evaluate`) are public so
that `examples/classification_lt.py` reuses them with more options.
"""

import argparse
import contextlib
import functools
import json
import math
import os
import sys
import time

import numpy as np

from keras_eql import __version__

METHODS = ("cross_entropy", "softmax_eql", "logit_adjusted", "balanced_softmax")
GROUPS = ("head", "medium", "tail")
# Training recipes (`--recipe`). "default": linear classifier, Adam. "authors":
# the authors' Softmax-EQL recipe for ImageNet-LT (United-Perception's
# res50_softmax_eql.yaml): cosine classifier with temperature 30, SGD with
# Nesterov momentum 0.9, weight decay 5e-4 (coupled, as torch's SGD). Both
# use a cosine schedule. `learning_rate` is each recipe's default. The
# authors' 0.1 is for a ResNet-50 at batch 32 per GPU; the demo CNN's rate was
# tuned once on a held-out fifth of the training set, never on the test set
# (`scripts/tune_recipe_learning_rate.py`, BENCHMARKS.md).
RECIPES = {
    "default": {"learning_rate": 2e-3},
    "authors": {"learning_rate": 3.0, "temperature": 30.0, "momentum": 0.9,
                "weight_decay": 5e-4},
}
# Legend names in the figure.
DISPLAY_NAMES = {"cross_entropy": "cross-entropy", "softmax_eql": "Softmax-EQL"}
# Test images per class scored after every epoch for TensorBoard (the table uses them all).
EPOCH_TEST_IMAGES_PER_CLASS = 100
DEFAULTS = {"epochs": 12, "imbalance_factor": 100.0, "seed": 0, "batch_size": 128,
            "learning_rate": RECIPES["default"]["learning_rate"], "width": 24,
            "output_dir": "demo_output", "recipe": "default"}


# -- building blocks -----------------------------------------------------------
def small_cnn(num_classes=10, width=24, input_shape=(28, 28, 1), seed=0, *,
              cosine_temperature=None, weight_decay=None):
    """A two-convolution CNN, fast under XLA on a CPU.

    Strided convolutions instead of pooling: XLA's CPU convolutions are slow
    on large feature maps, and this keeps an epoch of Fashion-MNIST-LT at a
    few seconds on two cores. No batch normalisation, for the same reason.

    Args:
        num_classes: width of the logits.
        width: filters of the first convolution (the second has twice as
            many, the hidden dense layer four times).
        input_shape: image shape.
        seed: weight-initialisation seed.
        cosine_temperature: if set, the classifier is a
            `keras_eql.CosineClassifier` with this temperature, else `Dense`.
        weight_decay: if set, torch-style (coupled) weight decay on every
            weight: an L2 penalty `weight_decay / 2 * ||w||^2`, whose
            gradient is `weight_decay * w`.

    Returns:
        An unbuilt-optimizer `keras.Model` mapping images to raw logits.

    Example:
        >>> small_cnn(width=8).output_shape
        (None, 10)
    """
    import keras

    layers = keras.layers
    decay = {}
    if weight_decay:
        decay = {"kernel_regularizer": keras.regularizers.L2(weight_decay / 2),
                 "bias_regularizer": keras.regularizers.L2(weight_decay / 2)}
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape, name="images")
    hidden = layers.Conv2D(width, 5, strides=2, padding="same", activation="relu", **decay)(inputs)
    hidden = layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu", **decay)(hidden)
    hidden = layers.Flatten()(hidden)
    hidden = layers.Dense(4 * width, activation="relu", **decay)(hidden)
    if cosine_temperature:
        from keras_eql.layers import CosineClassifier

        logits = CosineClassifier(num_classes, temperature=cosine_temperature, name="logits",
                                  kernel_regularizer=decay.get("kernel_regularizer"))(hidden)
    else:
        logits = layers.Dense(num_classes, name="logits", **decay)(hidden)
    return keras.Model(inputs, logits, name="small_cnn")


def available_methods():
    """The demo's methods whose losses can be built here.

    Returns:
        `(available, missing)`: method names, and `{method: reason}` for the
        baselines whose module cannot be imported.
    """
    try:
        from keras_eql import baselines  # noqa: F401
    except ImportError as error:
        reason = f"keras_eql.baselines is not importable ({error})"
        return list(METHODS[:2]), {m: reason for m in METHODS[2:]}
    return list(METHODS), {}


def make_loss(method, class_counts):
    """The loss of one demo method.

    Args:
        method: one of `METHODS`.
        class_counts: training images per class (for the prior-based
            baselines; the EQL loss learns its statistics itself).

    Returns:
        A `keras.losses.Loss` taking raw logits and sparse labels. Cross-entropy
        is `SoftmaxEQL(tau=0)`: the same loss (no re-weighting), with the
        gradient statistics that Fig. 1 draws beside Softmax-EQL's.

    Raises:
        ValueError: unknown method.

    Example:
        >>> make_loss("softmax_eql", [6000, 60]).name
        'softmax_eql'
    """
    import keras_eql

    counts = [float(c) for c in class_counts]
    if method == "cross_entropy":
        return keras_eql.SoftmaxEQL(num_classes=len(counts), tau=0.0, name="cross_entropy")
    if method == "softmax_eql":
        return keras_eql.SoftmaxEQL(num_classes=len(counts))
    if method == "logit_adjusted":
        from keras_eql.baselines import LogitAdjustedLoss

        total = sum(counts)
        return LogitAdjustedLoss(class_priors=[c / total for c in counts], tau=1.0)
    if method == "balanced_softmax":
        from keras_eql.baselines import BalancedSoftmax

        return BalancedSoftmax(class_counts=counts)
    raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}.")


def image_dataset(images, labels, batch_size, *, shuffle_seed=None):
    """A pipeline of float images in [0, 1] and int32 labels.

    Batches have a static size (the last partial batch is dropped when
    shuffling, i.e. for training), so XLA compiles the step once.

    Args:
        images: uint8 array `(N, H, W)` or `(N, H, W, 1)`.
        labels: integer labels `(N,)`.
        batch_size: batch size.
        shuffle_seed: shuffle every epoch with this seed (training), or None.

    Returns:
        Under TensorFlow a `tf.data.Dataset` of `(images, labels)`; under
        another backend a `keras.utils.PyDataset` of NumPy batches (a JAX
        host needs no TensorFlow).
    """
    if images.ndim == 3:
        images = images[..., None]
    import keras

    if keras.backend.backend() != "tensorflow":
        return _numpy_images_class()(images, labels, batch_size, shuffle_seed)
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, np.asarray(labels, np.int32)))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=shuffle_seed is not None)
    return dataset.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y)).prefetch(2)


@functools.lru_cache(maxsize=None)
def _numpy_images_class():
    """The PyDataset behind `image_dataset` off TensorFlow (built once: Keras is imported lazily here)."""
    import keras

    class NumpyImages(keras.utils.PyDataset):
        """`image_dataset` in NumPy: the same batches, reshuffled every epoch when seeded."""

        def __init__(self, images, labels, batch_size, shuffle_seed):
            super().__init__()
            self.images, self.labels = images, np.asarray(labels, np.int32)
            self.batch_size = batch_size
            self.rng = None if shuffle_seed is None else np.random.default_rng(shuffle_seed)
            self.order = np.arange(len(self.labels))
            self.on_epoch_end()

        def __len__(self):
            if self.rng is not None:  # training: full batches only
                return len(self.labels) // self.batch_size
            return -(-len(self.labels) // self.batch_size)

        def __getitem__(self, index):
            rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
            return self.images[rows].astype(np.float32) / 255.0, self.labels[rows]

        def on_epoch_end(self):
            if self.rng is not None:
                self.order = self.rng.permutation(len(self.labels))

    return NumpyImages


def _balanced_part(labels, per_class):
    """Indices of the first `per_class` images of every class (all of a smaller set)."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]))


def _test_accuracy_logger(images, labels, groups, log_dir):
    """A callback: accuracy per group on `images` after every epoch, in `logs` and TensorBoard.

    TensorBoard gets `test_accuracy/<overall|group>` in the run `<log_dir>/test`,
    the step being the epoch as in Keras's `epoch_*` scalars.
    """
    import keras
    import tensorflow as tf

    from keras_eql import data

    class TestAccuracyLogger(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "test"))

        def on_epoch_end(self, epoch, logs=None):
            logits = self.model.predict(image_dataset(images, labels, 1000), verbose=0)
            accuracy = data.group_accuracy(labels, np.argmax(logits, axis=-1), groups)
            with self.writer.as_default():
                for name, value in accuracy.items():
                    tf.summary.scalar(f"test_accuracy/{name}", value, step=epoch)
            self.writer.flush()
            if logs is not None:  # the progress bar shows them
                logs.update({f"test_{name}": value for name, value in accuracy.items()})

        def on_train_end(self, logs=None):
            self.writer.close()

    return TestAccuracyLogger()


def _loggers(loss, log_dir, class_counts, test_split=None, csv_path=None, every_n_steps=None):
    """TensorBoard, the gradient-statistics logger for keras_eql losses, per-group test accuracy."""
    import keras

    from keras_eql import data

    groups = data.head_medium_tail(class_counts)
    callbacks = [keras.callbacks.TensorBoard(log_dir=log_dir)]
    if test_split is not None:
        images, labels = test_split
        part = _balanced_part(labels, EPOCH_TEST_IMAGES_PER_CLASS)
        callbacks.append(_test_accuracy_logger(images[part], labels[part], groups, log_dir))
    if hasattr(loss, "gradient_statistics"):
        from keras_eql.callbacks import GradientStatisticsLogger

        names = list(data.CLASS_NAMES) if len(class_counts) == len(data.CLASS_NAMES) else None
        callbacks.append(GradientStatisticsLogger(
            log_dir=log_dir, csv_path=csv_path, every_n_steps=every_n_steps,
            class_counts=list(class_counts), class_names=names, groups=groups))
    return callbacks


def train_and_evaluate(method, splits, class_counts, *, epochs, batch_size=128,
                       learning_rate=None, width=24, seed=0, jit_compile=True,
                       strategy=None, log_dir=None, verbose=1, loss=None, recipe="default",
                       statistics_csv=None):
    """Train `small_cnn` with one loss and evaluate it per group.

    A cosine-decayed learning rate, no warm-up (softmax losses on a small
    CNN are stable from the first step). Recipe `"default"`: linear
    classifier and Adam; `"authors"`: cosine classifier (temperature 30),
    SGD with Nesterov momentum 0.9 and weight decay 5e-4 (`RECIPES`).

    Args:
        method: a name from `METHODS`, used for the loss (unless `loss` is
            given) and the log directory.
        splits: `(x_train, y_train, x_test, y_test)` uint8 images and labels.
        class_counts: training images per class.
        epochs: training epochs.
        batch_size: global batch size.
        learning_rate: initial learning rate; None: the recipe's
            (`RECIPES[recipe]["learning_rate"]`).
        width: `small_cnn` width.
        seed: initialisation and shuffling seed.
        jit_compile: compile the train step with XLA.
        strategy: a `tf.distribute.Strategy` whose scope builds the model and
            loss, or None.
        log_dir: TensorBoard directory of this run, or None. With one, the
            accuracy per group on a balanced part of the test set
            (`EPOCH_TEST_IMAGES_PER_CLASS` per class) is logged after every
            epoch.
        verbose: Keras `fit` verbosity (1: progress bar).
        loss: a loss instance overriding `make_loss(method, class_counts)`.
        recipe: `"default"` or `"authors"` (see `RECIPES`).
        statistics_csv: with `log_dir`, the `GradientStatisticsLogger` CSV of
            a keras_eql loss (four rows of statistics per epoch), or None.

    Returns:
        `(metrics, loss)`: `{"overall", "head", "medium", "tail",
        "per_class", "seconds"}` and the trained loss object.
    """
    import keras

    import keras_eql
    from keras_eql import data

    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}.")
    settings = RECIPES[recipe]
    if learning_rate is None:
        learning_rate = settings["learning_rate"]
    x_train, y_train, x_test, y_test = splits
    steps_per_epoch = len(y_train) // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size={batch_size} exceeds the {len(y_train)} training images.")
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = small_cnn(len(class_counts), width=width, seed=seed,
                          cosine_temperature=settings.get("temperature"),
                          weight_decay=settings.get("weight_decay"))
        loss = make_loss(method, class_counts) if loss is None else loss
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * steps_per_epoch)
        if "momentum" in settings:
            optimizer = keras.optimizers.SGD(schedule, momentum=settings["momentum"], nesterov=True)
        else:
            optimizer = keras.optimizers.Adam(schedule)
        model.compile(optimizer, loss=loss, jit_compile=jit_compile)
        keras_eql.attach(model)  # JAX: the statistics become model state; a no-op elsewhere
    callbacks = _loggers(loss, log_dir, class_counts, (x_test, y_test), csv_path=statistics_csv,
                         every_n_steps=max(1, steps_per_epoch // 4)) if log_dir else []
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.random.set_seed(seed)
    started = time.perf_counter()
    model.fit(image_dataset(x_train, y_train, batch_size, shuffle_seed=seed),
              epochs=epochs, verbose=verbose, callbacks=callbacks, shuffle=False)
    seconds = time.perf_counter() - started
    logits = model.predict(image_dataset(x_test, y_test, 1000), verbose=0)
    predictions = np.argmax(logits, axis=-1)
    groups = data.head_medium_tail(class_counts)
    metrics = data.group_accuracy(y_test, predictions, groups)
    metrics["per_class"] = [float(np.mean(predictions[y_test == c] == c)) if np.any(y_test == c)
                            else float("nan") for c in range(len(class_counts))]
    metrics["seconds"] = round(seconds, 1)
    return metrics, loss


# -- reporting -----------------------------------------------------------------
def format_table(results):
    """A fixed-width text table of overall / head / medium / tail accuracy (%).

    Args:
        results: `{method: {"overall": .., "head": .., ...}}` in [0, 1].

    Returns:
        The table as one string.

    Example:
        >>> print(format_table({"ce": {"overall": 0.5, "head": 0.9, "medium": 0.5, "tail": 0.1}}))
        method              overall    head  medium    tail
        ce                     50.0    90.0    50.0    10.0
    """
    lines = [f"{'method':<18}{'overall':>9}" + "".join(f"{g:>8}" for g in GROUPS)]
    for method, row in results.items():
        cells = "".join(f"{100 * row[g]:>8.1f}" for g in GROUPS)
        lines.append(f"{method:<18}{100 * row['overall']:>9.1f}" + cells)
    return "\n".join(lines)


def save_statistics_figure(loss, class_counts, path, *, baseline=None):
    """Write the positive / negative / ratio panels (Tan et al., Fig. 1) to `path`.

    Args:
        loss: a trained keras_eql loss.
        class_counts: training images per class (x axis: frequent first).
        path: PNG file to write.
        baseline: optional second trained loss drawn beside (the demo's
            cross-entropy, `SoftmaxEQL(tau=0)`).

    Returns:
        True if written, False without matplotlib (a message says so).
    """
    from keras_eql import data
    from keras_eql.plotting import plot_gradient_statistics

    names = list(data.CLASS_NAMES) if len(class_counts) == len(data.CLASS_NAMES) else None
    try:
        figure = plot_gradient_statistics(
            loss, class_counts=list(class_counts), class_names=names, baseline=baseline,
            groups=data.head_medium_tail(class_counts), label=DISPLAY_NAMES.get(loss.name),
            baseline_label=None if baseline is None else DISPLAY_NAMES.get(baseline.name))
    except ImportError as error:
        print(f"No gradient statistics figure: {error}")
        return False
    figure.savefig(path)
    return True


# -- command line ----------------------------------------------------------------
def positive_int(text):
    """argparse type: an integer >= 1 (the error names the value)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _finite_number(text, accept, expected):
    """`float(text)` if it is finite and `accept`s it, else an argparse error."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not accept(value):
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
    return value


def imbalance_factor(text):
    """argparse type: a finite number >= 1."""
    return _finite_number(text, lambda value: value >= 1, "a finite number >= 1")


def positive_float(text):
    """argparse type: a finite number > 0."""
    return _finite_number(text, lambda value: value > 0, "a positive number")


def _methods(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {unknown or text!r}; choose from {', '.join(METHODS)}")
    return names


def build_parser():
    """The `keras-eql` argument parser.

    Returns:
        An `argparse.ArgumentParser` with the sub-command `demo`; its type
        checks reject bad values with a message naming them.

    Example:
        >>> build_parser().parse_args(["demo", "--epochs", "3"]).epochs
        3
    """
    parser = argparse.ArgumentParser(
        prog="keras-eql", description="keras_eql command line. Run `keras-eql demo`.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="train cross-entropy, Softmax-EQL and two baselines on Fashion-MNIST-LT",
        description=__doc__.split("\n\n")[1], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    demo.add_argument("--epochs", type=positive_int, default=DEFAULTS["epochs"])
    demo.add_argument("--imbalance-factor", type=imbalance_factor, default=DEFAULTS["imbalance_factor"],
                      help="n_max / n_min of the exponential profile")
    demo.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    demo.add_argument("--output-dir", default=DEFAULTS["output_dir"])
    demo.add_argument("--methods", type=_methods, default=list(METHODS),
                      help="comma-separated subset of " + ",".join(METHODS))
    demo.add_argument("--batch-size", type=positive_int, default=DEFAULTS["batch_size"])
    demo.add_argument("--recipe", choices=tuple(RECIPES), default=DEFAULTS["recipe"],
                      help="default: linear classifier + Adam; authors: cosine classifier "
                      "(temperature 30) + SGD Nesterov, weight decay 5e-4 (the authors' "
                      "Softmax-EQL recipe for ImageNet-LT)")
    demo.add_argument("--learning-rate", type=positive_float, default=None,
                      help="initial learning rate (default: the recipe's, " + ", ".join(
                          f"{name} {settings['learning_rate']:g}" for name, settings in RECIPES.items())
                      + ")")
    demo.add_argument("--width", type=positive_int, default=DEFAULTS["width"], help="CNN width")
    demo.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=True,
                      help="compile the train step with XLA")
    demo.add_argument("--max-train-samples", type=positive_int, default=None,
                      help="random subset of the long-tailed training set (smoke tests)")
    demo.add_argument("--max-test-samples", type=positive_int, default=None,
                      help="random subset of the test set (smoke tests)")
    demo.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                      help="Keras fit verbosity (1: progress bars)")
    return parser


def _subset(rng, size, limit):
    if limit is None or limit >= size:
        return slice(None)
    return np.sort(rng.choice(size, limit, replace=False))


def run_demo(args):
    """Train every method, print the table and write the outputs.

    Args:
        args: the parsed `demo` arguments (see `build_parser`).

    Returns:
        `{method: {"overall", "head", "medium", "tail"}}`, as in `results.json`.
    """
    from keras_eql import data

    if args.learning_rate is None:
        args.learning_rate = RECIPES[args.recipe]["learning_rate"]
    started = time.perf_counter()
    os.makedirs(args.output_dir, exist_ok=True)
    statistics_csv = os.path.join(args.output_dir, "statistics.csv")
    if os.path.exists(statistics_csv):  # the logger appends: start this run's afresh
        os.remove(statistics_csv)
    source = data.load_fashion_mnist(seed=args.seed)
    print(f"Fashion-MNIST source: {source.source}")
    indices = data.long_tailed_indices(source.y_train, args.imbalance_factor, seed=args.seed)
    x_train, y_train = source.x_train[indices], source.y_train[indices]
    counts = data.class_counts(y_train)
    groups = data.head_medium_tail(counts)
    print(f"Fashion-MNIST-LT, imbalance factor {args.imbalance_factor:g}: "
          f"{len(y_train)} training images, per class {counts.tolist()}.")
    rng = np.random.default_rng(args.seed)
    keep = _subset(rng, len(y_train), args.max_train_samples)
    x_train, y_train = x_train[keep], y_train[keep]
    keep = _subset(rng, len(source.y_test), args.max_test_samples)
    x_test, y_test = source.x_test[keep], source.y_test[keep]
    if args.max_train_samples or args.max_test_samples:
        print(f"Using random subsets: {len(y_train)} training, {len(y_test)} test images.")
    else:
        print(f"{len(y_test)} test images (balanced).")
    print("Groups: " + "; ".join(f"{g} = classes {groups[g]}" for g in GROUPS))

    available, missing = available_methods()
    results, details, trained = {}, {}, {}
    # Cross-entropy first: its statistics are the baseline of Softmax-EQL's figure.
    for method in sorted(args.methods, key=lambda name: name != "cross_entropy"):
        if method not in available:
            print(f"Skipping {method}: {missing[method]}.")
            continue
        print(f"\n=== {method} ===")
        metrics, loss = train_and_evaluate(
            method, (x_train, y_train, x_test, y_test), counts, epochs=args.epochs,
            batch_size=args.batch_size, learning_rate=args.learning_rate, width=args.width,
            seed=args.seed, jit_compile=args.jit_compile, verbose=args.verbose,
            log_dir=os.path.join(args.output_dir, "tensorboard", method), recipe=args.recipe,
            statistics_csv=statistics_csv)
        results[method] = {key: metrics[key] for key in ("overall",) + GROUPS}
        details[method] = metrics
        if hasattr(loss, "gradient_statistics"):
            trained[method] = loss
            details[method]["gradient_statistics"] = {
                k: v.tolist() for k, v in loss.gradient_statistics().items()}
        if method == "softmax_eql":
            figure_path = os.path.join(args.output_dir, "gradient_statistics.png")
            if save_statistics_figure(loss, counts, figure_path, baseline=trained.get("cross_entropy")):
                print(f"Gradient statistics figure: {figure_path}")

    with open(os.path.join(args.output_dir, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    run_info = {"data_source": source.source, "class_counts": counts.tolist(), "groups": groups,
                "seconds_total": round(time.perf_counter() - started, 1),
                "arguments": {k: v for k, v in vars(args).items() if k != "command"},
                "methods": details}
    with open(os.path.join(args.output_dir, "details.json"), "w") as handle:
        json.dump(run_info, handle, indent=2)
    print("\nTop-1 accuracy (%) on the balanced test set; groups = mean per-class accuracy")
    print(format_table(results))
    written = [name for name in ("results.json", "details.json", "gradient_statistics.png", "statistics.csv")
               if os.path.exists(os.path.join(args.output_dir, name))]
    print(f"\nWrote {', '.join(written)} and TensorBoard logs in {args.output_dir} "
          f"(tensorboard --logdir {os.path.join(args.output_dir, 'tensorboard')}) "
          f"in {run_info['seconds_total']:.0f} s.")
    return results


def main(argv=None):
    """Entry point of the `keras-eql` console script.

    Args:
        argv: arguments without the program name; `sys.argv[1:]` when None.

    Returns:
        The process exit code.

    Example:
        >>> main(["demo", "--epochs", "1", "--max-train-samples", "512"])  # doctest: +SKIP
        0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    run_demo(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
