"""
Title: Long-tailed region classification with Sigmoid-EQL and an objectness column
Author: keras_eql contributors
Description: The second stage of a two-stage detector: classify RoIs into 36
    long-tailed categories or background, BCE vs SigmoidEQL(objectness=True).
Accelerator: CPU (GPU/TPU-ready: static shapes, no host callbacks in the step)

RoIs come from the synthetic LVIS-like set of `detection_lt.py`: two jittered
boxes per object (IoU >= 0.5 with it, labelled with its category) and three
background boxes per image (IoU < 0.3 with every object, label `C`), cropped
and resized to 24 x 24. The classifier has `C + 1` sigmoid outputs, the last
one the authors' objectness (background) branch, all biases initialised at
prior 0.001 as the authors do.

* `bce`: binary cross-entropy summed over the `C + 1` columns (background
  rows are positives of the objectness column), the EQLv2 paper's baseline.
* `sigmoid_eql`: `keras_eql.SigmoidEQL(objectness=True)`, the same loss with
  gradient-driven re-weighting of the `C` category columns.

Both score a RoI by `p_j * (1 - p_bg)` (`keras_eql.sigmoid_eql_scores`).
Reported: per-category AP of the RoI scores over all validation RoIs and
top-1 accuracy on the foreground RoIs, averaged over rare / common /
frequent categories (LVIS thresholds on training images).

    python examples/two_stage_lt.py                 # full run (see BENCHMARKS.md)
    python examples/two_stage_lt.py --smoke         # a few steps, for the tests
"""

import _common
import _synthetic
import numpy as np
import tensorflow as tf
import keras

import keras_eql

METHODS = ("bce", "sigmoid_eql")
CROP = 24
PRIOR_PROBABILITY = 0.001


def parse_args(argv=None):
    """Parse the flags (`--smoke` shrinks data, epochs and batch)."""
    parser = _common.synthetic_parser(__doc__, example_file=__file__,
                                      epochs=20, methods=METHODS, batch_size=128, learning_rate=1e-3)
    parser.add_argument("--width", type=_common.positive_int, default=32)
    return _common.parse_synthetic_args(parser, argv, METHODS, smoke_scale=0.03, smoke_batch_size=16)


def _iou(box, boxes):
    top_left, bottom_right = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def sample_rois(split, num_classes, seed, positives_per_object=2, negatives_per_image=3):
    """Jittered foreground RoIs and background RoIs, cropped and resized.

    Args:
        split: a `_synthetic.detection_split` dict.
        num_classes: `C`, the background label.
        seed: NumPy seed of the jitter.
        positives_per_object: RoIs with IoU >= 0.5 per object.
        negatives_per_image: RoIs with IoU < 0.3 to every object, per image.

    Returns:
        `(crops, labels)`: uint8 `(R, 24, 24, 3)` and int32 `(R,)`.
    """
    rng = np.random.default_rng(seed)
    size = split["images"].shape[1]
    image_ids, boxes, labels = [], [], []
    for i, (gt_boxes, gt_labels) in enumerate(zip(split["boxes"], split["labels"])):
        gt_boxes = gt_boxes[gt_labels >= 0].astype(np.float64)
        for box, label in zip(gt_boxes, gt_labels[gt_labels >= 0]):
            wh = box[2:] - box[:2]
            found = 0
            for _ in range(50):
                centre = (box[:2] + box[2:]) / 2 + rng.uniform(-0.15, 0.15, 2) * wh
                half = wh * rng.uniform(0.8, 1.25, 2) / 2
                candidate = np.concatenate([centre - half, centre + half])
                if _iou(candidate, box[None])[0] >= 0.5:
                    image_ids.append(i), boxes.append(candidate), labels.append(label)
                    found += 1
                    if found == positives_per_object:
                        break
        found = 0
        for _ in range(200):
            side = rng.uniform(10, 28, 2)
            corner = rng.uniform(0, size - side)
            candidate = np.concatenate([corner, corner + side])
            if len(gt_boxes) == 0 or _iou(candidate, gt_boxes).max() < 0.3:
                image_ids.append(i), boxes.append(candidate), labels.append(num_classes)
                found += 1
                if found == negatives_per_image:
                    break
    boxes = np.asarray(boxes, np.float32)
    # crop_and_resize takes normalised [y0, x0, y1, x1].
    normalised = boxes[:, [1, 0, 3, 2]] / size
    crops = tf.image.crop_and_resize(tf.constant(split["images"], tf.float32), normalised,
                                     np.asarray(image_ids, np.int32), (CROP, CROP))
    return np.clip(crops.numpy(), 0, 255).astype(np.uint8), np.asarray(labels, np.int32)


def region_classifier(num_outputs, width):
    """A small CNN on RoI crops; every logit's bias starts at prior 0.001."""
    layers = keras.layers
    inputs = keras.Input((CROP, CROP, 3), name="rois")
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(4 * width, activation="relu")(x)
    bias = -np.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
    logits = layers.Dense(num_outputs, bias_initializer=keras.initializers.Constant(bias), name="logits")(x)
    return keras.Model(inputs, logits, name="region_classifier")


def summed_bce(labels, logits):
    """BCE summed over the C + 1 columns; label C is the objectness column's positive."""
    targets = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), logits.shape[-1])
    return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits), axis=-1)


def average_precision(is_positive, scores):
    """Non-interpolated average precision of one class.

    Args:
        is_positive: bool array, the RoIs of this class.
        scores: the class's scores for every RoI.

    Returns:
        The mean precision at each positive, ranked by score; NaN without positives.

    Example:
        >>> average_precision(np.array([True, False, True]), np.array([0.9, 0.8, 0.1]))
        0.8333333333333333
    """
    if not np.any(is_positive):
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = is_positive[order].astype(np.float64)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(np.sum(precision * hits) / hits.sum())


def evaluate(scores, labels, num_classes, groups):
    """Per-category AP and foreground accuracy, overall and per LVIS group."""
    foreground = labels < num_classes
    predicted = np.argmax(scores, axis=-1)
    ap = [average_precision(labels == k, scores[:, k]) for k in range(num_classes)]
    accuracy = [float(np.mean(predicted[labels == k] == k)) if np.any(labels == k) else float("nan")
                for k in range(num_classes)]
    return {"mAP": float(np.nanmean(ap)), "acc": float(np.mean(predicted[foreground] == labels[foreground])),
            **_common.grouped_metric("AP", ap, groups), **_common.grouped_metric("acc", accuracy, groups)}


def main(argv=None):
    """Train a RoI classifier with each method's loss and score its RoIs; returns `{method: metrics}`."""
    args = parse_args(argv)
    strategy, jit_compile = _common.resolve_strategy(args.strategy, args.jit_compile)
    num_classes = _synthetic.NUM_CATEGORIES
    train, val = _synthetic.long_tailed_detection(args.scale, args.val_images_per_category, args.seed)
    groups = _common.lvis_groups(_common.category_image_counts(train, num_classes))
    x_train, y_train = sample_rois(train, num_classes, args.seed)
    x_val, y_val = sample_rois(val, num_classes, args.seed + 1)
    print(f"{len(y_train)} training RoIs ({np.mean(y_train == num_classes):.0%} background), "
          f"{len(y_val)} validation RoIs; groups: " + ", ".join(f"{len(v)} {k}" for k, v in groups.items()))
    results = {}
    for method in args.methods:
        _common.start_method(method, args.seed)
        # A new pipeline after the reseed, so that every method sees the same batches in the same order.
        train_data, steps_per_epoch = _common.shuffled_batches(
            x_train, y_train, min(args.batch_size, len(y_train)), args.seed)
        steps = steps_per_epoch * args.epochs
        with _common.scope(strategy):
            model = region_classifier(num_classes + 1, args.width)
            loss = (keras_eql.SigmoidEQL(num_classes=num_classes, objectness=True) if method == "sigmoid_eql"
                    else summed_bce)
            optimizer = _common.warmup_cosine_adam(args.learning_rate, steps, warmup_steps=steps // 20)
            model.compile(optimizer, loss=loss, jit_compile=jit_compile)
        seconds = _common.timed_fit(model, train_data, epochs=args.epochs, verbose=args.verbose, shuffle=False)
        logits = model.predict(x_val, batch_size=512, verbose=0)
        scores = keras_eql.sigmoid_eql_scores(logits, objectness=True).numpy()
        results[method] = {**evaluate(scores, y_val, num_classes, groups), "seconds": seconds,
                           **_common.statistics_summary(loss, ("ratio",))}
    return _common.report(args, results, ("mAP", "AP_r", "AP_c", "AP_f", "acc", "acc_r", "acc_c", "acc_f"),
                          "RoI classification on the balanced validation RoIs (%)", groups=groups)


if __name__ == "__main__":
    main()
