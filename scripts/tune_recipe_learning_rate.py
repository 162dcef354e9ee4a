"""Tune the learning rate of `keras-eql demo --recipe authors` on held-out training data.

The demo's long-tailed training set (Fashion-MNIST-LT, IF=100, seed 0) is
split per class into 80% for training and 20% held out (at least one image
per class; the test set is never read). Each learning rate of the grid
trains the demo CNN with the authors' recipe (cosine classifier, SGD with
Nesterov momentum, weight decay 5e-4, cosine schedule, 12 epochs) once per
method, and is scored by the held-out mean per-class accuracy (the held-out
part is long-tailed, the test set balanced: the mean over classes is the
balanced accuracy), averaged over the methods. The best rate is the
recipe's default (`keras_eql.cli.RECIPES`).

    python scripts/tune_recipe_learning_rate.py
    python scripts/tune_recipe_learning_rate.py --learning-rates 0.03,0.1 --methods cross_entropy
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_eql import cli, data  # noqa: E402


def held_out_split(labels, fraction, seed):
    """`(fit, held_out)` indices: `fraction` of each class held out (at least 1)."""
    rng = np.random.default_rng(seed)
    fit, held_out = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = max(1, int(round(fraction * len(members))))
        held_out.append(members[:count])
        fit.append(members[count:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(held_out))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--learning-rates", default="0.01,0.03,0.1,0.3")
    parser.add_argument("--methods", default="cross_entropy,softmax_eql")
    parser.add_argument("--held-out-fraction", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=cli.DEFAULTS["epochs"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="write the scores as JSON here")
    args = parser.parse_args(argv)
    rates = [float(rate) for rate in args.learning_rates.split(",")]
    methods = [name for name in args.methods.split(",") if name]

    source = data.load_fashion_mnist(seed=args.seed)
    indices = data.long_tailed_indices(source.y_train, cli.DEFAULTS["imbalance_factor"],
                                       seed=args.seed)
    images, labels = source.x_train[indices], source.y_train[indices]
    fit, held_out = held_out_split(labels, args.held_out_fraction, args.seed)
    counts = data.class_counts(labels[fit])
    print(f"{source.source}: {len(fit)} training, {len(held_out)} held-out images "
          f"(held out per class {data.class_counts(labels[held_out]).tolist()}).", flush=True)
    splits = (images[fit], labels[fit], images[held_out], labels[held_out])
    scores = {}
    for rate in rates:
        for method in methods:
            metrics, _ = cli.train_and_evaluate(
                method, splits, counts, epochs=args.epochs, batch_size=cli.DEFAULTS["batch_size"],
                learning_rate=rate, width=cli.DEFAULTS["width"], seed=args.seed, verbose=0,
                recipe="authors")
            scores.setdefault(rate, {})[method] = float(np.mean(metrics["per_class"]))
            print(f"lr {rate:g} {method:16s} held-out mean per-class accuracy "
                  f"{100 * scores[rate][method]:.1f} ({metrics['seconds']:.0f} s)", flush=True)
    means = {rate: float(np.mean(list(row.values()))) for rate, row in scores.items()}
    best = max(means, key=means.get)
    print("\nlearning rate  " + "  ".join(f"{m:>16s}" for m in methods) + "      mean")
    for rate, row in scores.items():
        print(f"{rate:<13g}  " + "  ".join(f"{100 * row[m]:16.1f}" for m in methods)
              + f"  {100 * means[rate]:8.1f}")
    print(f"best: {best:g}")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump({"args": vars(args), "scores": {str(k): v for k, v in scores.items()},
                       "mean": {str(k): v for k, v in means.items()}, "best": best}, handle, indent=2)
    return best


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
