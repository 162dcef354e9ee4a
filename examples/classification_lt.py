"""
Title: Long-tailed image classification with Softmax-EQL on Fashion-MNIST-LT
Author: keras_eql contributors
Description: The `keras-eql demo` training with every knob exposed: imbalance
    factor, CNN width, methods (losses), schedule, distribution strategy.
Accelerator: CPU (GPU/TPU-ready: static shapes, no host callbacks in the step)

Fashion-MNIST's training set is subsampled with the exponential profile
`n_i = n_max * IF ** (-i / 9)` (Cui et al. 2019); the test set stays
balanced. Head / medium / tail are classes 0-3 / 4-6 / 7-9 (thirds by
training count, `keras_eql.data.head_medium_tail`). The model is
`keras_eql.cli.small_cnn`, trained with Adam and a cosine schedule, or with
`--recipe authors` the authors' Softmax-EQL recipe: a cosine classifier
(temperature 30), SGD with Nesterov momentum and weight decay 5e-4.

`--methods` takes the demo's methods (`cross_entropy`, `softmax_eql`,
`logit_adjusted`, `balanced_softmax`) and any name `keras_eql.registry.get`
builds without arguments (`seesaw`, `sigmoid_eql`, ...). `--losses` is its
old, deprecated spelling.

    python examples/classification_lt.py --imbalance-factor 50 --width 32
    python examples/classification_lt.py --strategy mirrored --methods softmax_eql
    python examples/classification_lt.py --recipe authors --methods cross_entropy,softmax_eql
    python examples/classification_lt.py --smoke    # a few steps, for the tests

Under KERAS_BACKEND=jax (no TensorFlow needed) it trains the methods whose
losses keras_eql offers there (`cross_entropy` and `softmax_eql`, i.e.
SoftmaxEQL, and the Equalization Losses by registry name once
`keras_eql.get` is ported); `--strategy data_parallel` spreads each batch
over every local device (`keras.distribution.DataParallel`):

    KERAS_BACKEND=jax python examples/classification_lt.py --strategy data_parallel
"""

import argparse
import sys

import _common
import numpy as np

from keras_eql import cli, data


class _DeprecatedAlias(argparse.Action):
    """`--losses`: stores into `--methods`, with a note on stderr."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: {option_string} is deprecated; use --methods.", file=sys.stderr)
        setattr(namespace, self.dest, values)


def parse_args(argv=None):
    """Parse the flags (`--smoke` shrinks data, epochs and batch)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common.add_common_arguments(parser, epochs=cli.DEFAULTS["epochs"], example_file=__file__)
    parser.add_argument("--methods", default="cross_entropy,softmax_eql",
                        help="comma-separated method or loss names (see the module docstring)")
    parser.add_argument("--losses", dest="methods", action=_DeprecatedAlias, help=argparse.SUPPRESS)
    parser.add_argument("--imbalance-factor", type=_common.imbalance_factor,
                        default=cli.DEFAULTS["imbalance_factor"])
    parser.add_argument("--width", type=_common.positive_int, default=cli.DEFAULTS["width"],
                        help="backbone size: filters of the first convolution")
    parser.add_argument("--batch-size", type=_common.positive_int, default=cli.DEFAULTS["batch_size"])
    parser.add_argument("--recipe", choices=tuple(cli.RECIPES), default=cli.DEFAULTS["recipe"],
                        help="default: linear classifier + Adam; authors: cosine classifier "
                        "(temperature 30) + SGD Nesterov, weight decay 5e-4 (keras_eql.cli.RECIPES)")
    parser.add_argument("--learning-rate", type=_common.positive_float, default=None,
                        help="initial learning rate (default: the recipe's)")
    parser.add_argument("--max-train-samples", type=_common.positive_int, default=None)
    args = parser.parse_args(argv)
    args.methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    if not args.methods:
        parser.error("--methods: give at least one method or loss name")
    if args.learning_rate is None:
        args.learning_rate = cli.RECIPES[args.recipe]["learning_rate"]
    if args.smoke:
        args.epochs, args.max_train_samples, args.batch_size = 1, 512, 64
    return args


def build_loss(name, counts):
    """A demo method by name, else `keras_eql.registry.get(name)`."""
    if name in cli.METHODS:
        return cli.make_loss(name, counts)
    from keras_eql import registry

    try:
        return registry.get(name)
    except (ValueError, TypeError) as error:
        raise SystemExit(f"--methods: cannot build {name!r}: {error}") from None


def main(argv=None):
    """Train and evaluate every method; returns `{method: metrics}`."""
    args = parse_args(argv)
    strategy, jit_compile = _common.resolve_strategy(args.strategy, args.jit_compile)
    source = data.load_fashion_mnist(seed=args.seed)
    indices = data.long_tailed_indices(source.y_train, args.imbalance_factor, seed=args.seed)
    counts = data.class_counts(source.y_train[indices])
    if args.max_train_samples and args.max_train_samples < len(indices):
        indices = np.sort(np.random.default_rng(args.seed).choice(indices, args.max_train_samples, replace=False))
    x_test, y_test = source.x_test, source.y_test
    if args.smoke:
        x_test, y_test = x_test[:500], y_test[:500]
    print(f"Data: {source.source}; long-tailed counts {counts.tolist()}; training on {len(indices)} images.")
    splits = (source.x_train[indices], source.y_train[indices], x_test, y_test)
    results = {}
    for name in args.methods:
        print(f"\n=== {name} ===")
        with _common.scope(strategy):
            loss = build_loss(name, counts)
        metrics, loss = cli.train_and_evaluate(
            name, splits, counts, epochs=args.epochs, batch_size=args.batch_size,
            learning_rate=args.learning_rate, width=args.width, seed=args.seed,
            jit_compile=jit_compile, strategy=strategy, verbose=args.verbose, loss=loss,
            recipe=args.recipe)
        if hasattr(loss, "gradient_statistics"):
            metrics["statistics_steps"] = float(loss.statistics.steps.numpy())
        results[name] = metrics
    print("\nTop-1 accuracy (%) on the balanced test set; groups = mean per-class accuracy")
    print(cli.format_table(results))
    _common.write_results(args.output, {"args": vars(args), "class_counts": counts.tolist(),
                                        "data_source": source.source, "results": results})
    return results


if __name__ == "__main__":
    main()
