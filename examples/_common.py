"""Command-line flags, distribution strategies and reporting shared by the examples.

Every example accepts `--strategy {default,mirrored,multiworker,tpu}`,
`--jit-compile/--no-jit-compile` (on by default), `--epochs`, `--seed`,
`--output` (a JSON file for the results) and `--smoke` (a few steps on tiny
data, used by the tests).
"""

import argparse
import contextlib
import json
import os

import numpy as np

from keras_eql.cli import imbalance_factor, positive_float, positive_int

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
DOCS_HINT = ("Keras 3.15 `fit` fails under MultiWorkerMirroredStrategy before any loss code runs "
             "(keras-team/keras#20585). Use examples/multiworker_ctl.py, which trains the "
             "keras_eql losses with a custom training loop under that strategy")

__all__ = ["STRATEGIES", "add_common_arguments", "imbalance_factor", "positive_float",
           "positive_int", "resolve_strategy", "scope", "write_results", "print_table",
           "lvis_groups", "group_means"]


def add_common_arguments(parser, *, epochs):
    """Add the flags every example shares.

    Args:
        parser: an `argparse.ArgumentParser`.
        epochs: default number of epochs of a full run.

    Returns:
        The parser.
    """
    parser.add_argument("--strategy", choices=STRATEGIES, default="default",
                        help="tf.distribute strategy")
    parser.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=True,
                        help="compile the train step with XLA (must be explicit on CPU)")
    parser.add_argument("--epochs", type=positive_int, default=epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true",
                        help="a few steps on tiny data (the tests run this)")
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="Keras fit verbosity (1: progress bars)")
    return parser


def resolve_strategy(name, jit_compile):
    """The `tf.distribute.Strategy` for a `--strategy` value.

    Args:
        name: one of `STRATEGIES`.
        jit_compile: the requested XLA setting.

    Returns:
        `(strategy, jit_compile)`: `strategy` is None for `default`;
        `jit_compile` is turned off under `mirrored`, where Keras 3.15
        places the replicas' variables on devices XLA cannot reach
        (tf-mechanics.md, section 2).

    Raises:
        SystemExit: `multiworker` (Keras `fit` is broken there) or `tpu`
            without a TPU, with a message saying what to do instead.
    """
    import tensorflow as tf

    if name == "default":
        return None, jit_compile
    if name == "mirrored":
        if jit_compile:
            print("Note: --strategy mirrored runs without XLA (Keras 3.15 cannot combine "
                  "jit_compile with MirroredStrategy); pass --no-jit-compile to silence this.")
        return tf.distribute.MirroredStrategy(), False
    if name == "multiworker":
        raise SystemExit(f"--strategy multiworker is not supported by this fit()-based example. {DOCS_HINT}.")
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError, RuntimeError) as error:
            raise SystemExit(f"--strategy tpu: no TPU found ({error}). Run on a TPU VM or pick "
                             "--strategy default.") from None
        return tf.distribute.TPUStrategy(resolver), jit_compile
    raise SystemExit(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}.")


def scope(strategy):
    """`strategy.scope()`, or a no-op context when `strategy` is None."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


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
