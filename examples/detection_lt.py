"""
Title: Long-tailed dense detection with the Equalized Focal Loss
Author: keras_eql contributors
Description: Focal loss vs EqualizedFocalLoss, quality focal loss vs
    EqualizedQualityFocalLoss, on a synthetic LVIS-like long-tailed detection set.
Accelerator: CPU (GPU/TPU-ready: static shapes, no host callbacks in the step)

The data: 36 (shape, colour) categories with Zipf-Mandelbrot training
frequencies (500 images down to 4), grouped rare / common / frequent by the
LVIS thresholds (<= 10 / 11-100 / > 100 training images), and a balanced
validation set (see `_synthetic.py`). The model: a small single-stage,
anchor-free detector with FCOS-style centre sampling (`_detection.py`),
sigmoid classifier initialised at prior 0.001 as the authors do, GIoU box
loss, both normalised by the global number of positives.

Methods (`--methods`): `focal` (Lin et al.), `efl` (`EqualizedFocalLoss`,
s=8), `qfl` (quality focal loss, Li et al.) and `eqfl`
(`EqualizedQualityFocalLoss`, s=8). Each EQL loss is compared with its own
baseline, which it equals at s=0 (Table 10 of the paper). Evaluation:
pycocotools AP@[.5:.95] overall and averaged over rare / common / frequent
categories (`keras_eql.metrics.grouped_coco_ap`).

    python examples/detection_lt.py                 # full run (see BENCHMARKS.md)
    python examples/detection_lt.py --smoke         # a few steps, for the tests

It also runs under KERAS_BACKEND=jax (no TensorFlow needed), on every local
device with `--strategy data_parallel` (`keras.distribution.DataParallel`):

    KERAS_BACKEND=jax python examples/detection_lt.py --strategy data_parallel
"""

import _common
import _detection
import _synthetic
import numpy as np
from keras import ops

import keras_eql
from keras_eql.metrics import grouped_coco_ap, images_per_category

METHODS = ("focal", "efl", "qfl", "eqfl")


def parse_args(argv=None):
    """Parse the flags (`--smoke` shrinks data, epochs and batch)."""
    parser = _common.synthetic_parser(__doc__, example_file=__file__,
                                      epochs=30, methods=METHODS, batch_size=16, learning_rate=1e-3)
    parser.add_argument("--width", type=_common.positive_int, default=48, help="detector width")
    parser.add_argument("--scale-factor", type=float, default=8.0, help="s of EFL/EQFL")
    return _common.parse_synthetic_args(parser, argv, METHODS, smoke_scale=0.03, smoke_batch_size=8)


def classification_loss(method, num_classes, scale_factor):
    """The classification loss of a method, normalised by the global positives.

    Args:
        method: one of `METHODS`.
        num_classes: categories `C`.
        scale_factor: `s` of EFL/EQFL.

    Returns:
        A callable `(labels (B, L), logits (B, L, C), quality (B, L)) -> scalar`
        whose `.loss` attribute is the keras_eql loss (None for baselines).
    """
    if method == "efl":
        loss = keras_eql.EqualizedFocalLoss(num_classes=num_classes, scale=scale_factor,
                                            reduction="sum", normalize_by_positives=True)
    elif method == "eqfl":
        loss = keras_eql.EqualizedQualityFocalLoss(num_classes=num_classes, scale=scale_factor,
                                                   reduction="sum", normalize_by_positives=True)
    else:
        loss = None

    def compute(labels, logits, quality):
        logits = ops.cast(logits, "float32")
        one_hot = ops.one_hot(labels, num_classes + 1)[..., :num_classes]
        # A positive keeps a non-zero quality, so it counts as a positive row.
        quality_targets = one_hot * ops.maximum(quality, 1e-4)[..., None]
        if method == "efl":
            return loss(labels, logits)
        if method == "eqfl":
            return loss(quality_targets, logits)
        elementwise = (_detection.sigmoid_focal_loss(one_hot, logits) if method == "focal"
                       else _detection.quality_focal_loss(quality_targets, logits))
        positives = ops.sum(ops.cast(labels < num_classes, "float32"))
        return ops.sum(elementwise) / ops.maximum(_detection.global_sum(positives), 1.0)

    compute.loss = loss
    return compute


def evaluate(model, val, train_counts, batch_size):
    """COCO AP overall and per LVIS group of `model` on the validation split."""
    detect = model.detect
    if _common.backend() == "tensorflow":
        import tensorflow as tf

        detect = tf.function(detect)
    results = _detection.detect_in_batches(detect, val["images"], batch_size)
    return grouped_coco_ap(val["coco"], results, train_image_counts=train_counts)


def main(argv=None):
    """Train and evaluate every method; returns `{method: metrics}`."""
    args = parse_args(argv)
    strategy, jit_compile = _common.resolve_strategy(args.strategy, args.jit_compile)
    num_classes = _synthetic.NUM_CATEGORIES
    train, val = _synthetic.long_tailed_detection(args.scale, args.val_images_per_category, args.seed)
    train_counts = images_per_category(train["coco"])
    counts = np.array([train_counts[k + 1] for k in range(num_classes)])
    print(f"{len(train['images'])} training images (category image counts {counts.max()}..{counts.min()}: "
          f"{np.sum(counts > 100)} frequent, {np.sum((counts > 10) & (counts <= 100))} common, "
          f"{np.sum(counts <= 10)} rare); {len(val['images'])} validation images.")
    labels, boxes = _detection.assign_targets(train["boxes"], train["labels"], 64, num_classes)
    results = {}
    for method in args.methods:
        _common.start_method(method, args.seed)
        # A new pipeline after the reseed, so that every method sees the same batches in the same order.
        train_data, steps_per_epoch = _common.shuffled_batches(
            train["images"], {"labels": labels, "boxes": boxes}, args.batch_size, args.seed)
        steps = steps_per_epoch * args.epochs
        with _common.scope(strategy):
            loss = classification_loss(method, num_classes, args.scale_factor)
            model = _detection.DenseDetector(num_classes, loss, width=args.width)
            # Warm-up and gradient clipping, as the paper's EFL recipe (Section 5.2.2).
            optimizer = _common.warmup_cosine_adam(args.learning_rate, steps, warmup_steps=steps // 10,
                                                   global_clipnorm=35.0)
            model.compile(optimizer, jit_compile=jit_compile)
        seconds = _common.timed_fit(model, train_data, epochs=args.epochs, verbose=args.verbose, shuffle=False)
        # `loss.loss` is the keras_eql loss inside the classification loss (None for the baselines).
        results[method] = {**evaluate(model, val, train_counts, 32), "seconds": seconds,
                           **_common.statistics_summary(loss.loss, ("ratio", "positive", "negative"))}
        print({k: round(v, 4) for k, v in results[method].items() if isinstance(v, float)})
    return _common.report(args, results, ("AP", "APr", "APc", "APf"), "COCO box AP (%) on the balanced validation set",
                          train_image_counts=counts.tolist())


if __name__ == "__main__":
    main()
