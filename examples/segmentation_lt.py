"""
Title: Long-tailed semantic segmentation with Softmax-EQL and Sigmoid-EQL
Author: keras_eql contributors
Description: Per-pixel SoftmaxEQL vs cross-entropy and SigmoidEQL vs BCE on
    the synthetic LVIS-like set of `detection_lt.py`, drawn as masks.
Accelerator: CPU (GPU/TPU-ready: static shapes, no host callbacks in the step)

Every pixel is labelled with the category of the object covering it, or
background (label `C` = 36). A small encoder-decoder predicts per-pixel
logits at full resolution. Losses (`--methods`):

* `ce`: softmax cross-entropy over the `C + 1` classes (background a class).
* `softmax_eql`: `keras_eql.SoftmaxEQL(num_classes=C + 1)`, the same classes.
* `bce`: sigmoid BCE summed over `C` category columns plus an objectness
  (background) column; prior-0.001 bias init.
* `sigmoid_eql`: `keras_eql.SigmoidEQL(objectness=True)`, the same layout.

Sigmoid models predict `argmax([p_j * (1 - p_bg)]_j, p_bg)`. Reported: mIoU
and mAcc (per-class pixel accuracy) over the categories, and over the rare /
common / frequent categories (LVIS thresholds on training images).

    python examples/segmentation_lt.py              # full run (see BENCHMARKS.md)
    python examples/segmentation_lt.py --smoke      # a few steps, for the tests
"""

import _common
import _synthetic
import numpy as np
import tensorflow as tf
import keras

import keras_eql

METHODS = ("ce", "softmax_eql", "bce", "sigmoid_eql")
PRIOR_PROBABILITY = 0.001


def parse_args(argv=None):
    """Parse the flags (`--smoke` shrinks data, epochs and batch)."""
    parser = _common.synthetic_parser(__doc__, example_file=__file__,
                                      epochs=30, methods=METHODS, batch_size=16, learning_rate=2e-3)
    parser.add_argument("--width", type=_common.positive_int, default=32)
    return _common.parse_synthetic_args(parser, argv, METHODS, smoke_scale=0.03, smoke_batch_size=8)


def segmenter(num_outputs, width, image_size, sigmoid):
    """Encoder to stride 4, decoder with one skip connection back to full size."""
    layers = keras.layers
    images = keras.Input((image_size, image_size, 3), name="images")
    x = layers.Rescaling(1 / 255.0)(images)
    skip = layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(x)        # 1/2
    x = layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu")(skip)    # 1/4
    x = layers.Conv2D(2 * width, 3, padding="same", activation="relu")(x)
    x = layers.UpSampling2D(2, interpolation="bilinear")(x)
    x = layers.Concatenate()([x, skip])
    x = layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    bias = -np.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY) if sigmoid else 0.0
    x = layers.Conv2D(num_outputs, 1, bias_initializer=keras.initializers.Constant(bias))(x)
    logits = layers.UpSampling2D(2, interpolation="bilinear", name="logits")(x)
    return keras.Model(images, logits, name="segmenter")


def summed_bce(labels, logits):
    """Per-pixel BCE summed over the columns; label C is the objectness column's positive."""
    targets = tf.one_hot(tf.cast(labels, tf.int32), logits.shape[-1])
    return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits), axis=-1)


def make_loss(method, num_classes):
    """The loss of a method (`C + 1` logits: background last)."""
    if method == "ce":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if method == "softmax_eql":
        return keras_eql.SoftmaxEQL(num_classes=num_classes + 1)
    if method == "bce":
        return summed_bce
    return keras_eql.SigmoidEQL(num_classes=num_classes, objectness=True)


def predict_labels(model, images, method):
    """Per-pixel labels: softmax argmax, or argmax over `p_j (1 - p_bg)` and `p_bg`."""
    logits = model.predict(images, batch_size=32, verbose=0)
    if method in ("ce", "softmax_eql"):
        return np.argmax(logits, axis=-1)
    scores = keras_eql.sigmoid_eql_scores(logits, objectness=True).numpy()
    background = tf.sigmoid(logits[..., -1:]).numpy()
    return np.argmax(np.concatenate([scores, background], axis=-1), axis=-1)


def evaluate(predicted, labels, num_classes, groups):
    """mIoU / mAcc over the categories and per group, from a confusion matrix."""
    size = num_classes + 1
    confusion = np.bincount(labels.ravel() * size + predicted.ravel(), minlength=size * size).reshape(size, size)
    true_positive = np.diag(confusion).astype(np.float64)
    in_truth, in_prediction = confusion.sum(1), confusion.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(in_truth > 0, true_positive / (in_truth + in_prediction - true_positive), np.nan)
        accuracy = np.where(in_truth > 0, true_positive / in_truth, np.nan)
    return {"mIoU": float(np.nanmean(iou[:num_classes])), "mAcc": float(np.nanmean(accuracy[:num_classes])),
            "IoU_background": float(iou[num_classes]),
            **_common.grouped_metric("mIoU", iou[:num_classes], groups),
            **_common.grouped_metric("mAcc", accuracy[:num_classes], groups)}


def main(argv=None):
    """Train a segmenter with each method's loss and score its masks; returns `{method: metrics}`."""
    args = parse_args(argv)
    strategy, jit_compile = _common.resolve_strategy(args.strategy, args.jit_compile)
    num_classes = _synthetic.NUM_CATEGORIES
    train, val = _synthetic.long_tailed_detection(args.scale, args.val_images_per_category, args.seed)
    groups = _common.lvis_groups(_common.category_image_counts(train, num_classes))
    train_labels, val_labels = _synthetic.segmentation_labels(train), _synthetic.segmentation_labels(val)
    image_size = train["images"].shape[1]
    print(f"{len(train_labels)} training images ({np.mean(train_labels == num_classes):.0%} background pixels), "
          f"{len(val_labels)} validation images; groups: " + ", ".join(f"{len(v)} {k}" for k, v in groups.items()))
    results = {}
    for method in args.methods:
        _common.start_method(method, args.seed)
        # A new pipeline after the reseed, so that every method sees the same batches in the same order.
        train_data, steps_per_epoch = _common.shuffled_batches(
            train["images"], train_labels, min(args.batch_size, len(train_labels)), args.seed)
        steps = steps_per_epoch * args.epochs
        sigmoid = method in ("bce", "sigmoid_eql")
        with _common.scope(strategy):
            model = segmenter(num_classes + 1, args.width, image_size, sigmoid)
            loss = make_loss(method, num_classes)
            optimizer = _common.warmup_cosine_adam(args.learning_rate, steps, warmup_steps=steps // 20)
            model.compile(optimizer, loss=loss, jit_compile=jit_compile)
        seconds = _common.timed_fit(model, train_data, epochs=args.epochs, verbose=args.verbose, shuffle=False)
        predicted = predict_labels(model, val["images"], method)
        results[method] = {**evaluate(predicted, val_labels, num_classes, groups), "seconds": seconds,
                           **_common.statistics_summary(loss, ("positive",))}
    return _common.report(args, results, ("mIoU", "mIoU_r", "mIoU_c", "mIoU_f", "mAcc", "mAcc_r", "mAcc_c", "mAcc_f"),
                          "Segmentation on the balanced validation set (%), categories only", groups=groups)


if __name__ == "__main__":
    main()
