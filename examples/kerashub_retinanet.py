"""
Title: EqualizedFocalLoss as the classification loss of KerasHub's RetinaNet
Author: keras_eql contributors
Description: Plug keras_eql.EqualizedFocalLoss into
    keras_hub.models.RetinaNetObjectDetector (built from config, no
    downloaded weights) and train it on the synthetic long-tailed set.
Accelerator: CPU (GPU/TPU-ready: static shapes, no host callbacks in the step)

How RetinaNet calls its classification loss (keras-hub 0.32,
`RetinaNetObjectDetector.compute_loss`): the label encoder matches anchors
to boxes (IoU >= 0.5 positive, < 0.4 background, in between ignored), then
the loss gets

* `y_true`: one-hot targets `(batch, anchors, C)` built with
  `one_hot(label, C)`: background (-1) and ignored (-2) anchors are all-zero
  rows;
* `y_pred`: raw logits `(batch, anchors, C)` (sigmoid, no background column);
* `sample_weight`: `(batch, anchors)`, `1 / num_positives` for kept anchors
  and 0 for ignored ones; the compiled loss should use `reduction="sum"`.

That is exactly what `EqualizedFocalLoss` takes as dense binary targets, so no
wrapper is needed: `classification_loss=EqualizedFocalLoss(num_classes=C,
reduction="sum")` gives the detectors' "sum over anchors and classes divided
by the number of positives", and the statistics see the same normalised
gradient (ignored anchors, weighted 0, contribute nothing).

Two fixes to KerasHub's defaults, both for small synthetic objects and for
the paper's recipe: the classification head gets the authors' prior-0.001
bias (keras-hub 0.32 gives the prior bias to the *box* head and leaves the
classification bias at 0, i.e. p = 0.5 on every anchor at step 0); the box
head's bias is reset to 0. Anchors are 16-25 px on P2 and 32-50 px on P3
(`anchor_size=4`, three scales), because the objects are 10-24 px.

`--methods focal` trains KerasHub's own `BinaryFocalCrossentropy` (rescaled
to a sum over classes, which Keras averages) for comparison.

    python examples/kerashub_retinanet.py --epochs 10     # full run
    python examples/kerashub_retinanet.py --smoke         # a few steps, for the tests
"""

import _common
import _synthetic
import numpy as np
import keras

import keras_eql
from keras_eql.metrics import grouped_coco_ap, images_per_category

try:
    import keras_hub
except ImportError:  # the tests skip with this reason
    keras_hub = None

METHODS = ("efl", "focal")
IMAGE_SIZE = 64
PRIOR_PROBABILITY = 0.001


def parse_args(argv=None):
    """Parse the flags (`--smoke` shrinks data, epochs and batch)."""
    parser = _common.synthetic_parser(__doc__, example_file=__file__,
                                      epochs=10, methods=METHODS, default_methods=("efl",),
                                      batch_size=16, learning_rate=1e-3)
    return _common.parse_synthetic_args(parser, argv, METHODS, smoke_scale=0.02, smoke_batch_size=8)


def build_detector(num_classes):
    """A small RetinaNet from config: a two-stage ResNet (basic blocks) + FPN on P2-P3."""
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 64],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        image_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder, min_level=2, max_level=3, use_p5=False, image_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))
    anchors = keras_hub.layers.AnchorGenerator(
        "xyxy", min_level=2, max_level=3, num_scales=3, aspect_ratios=[1.0], anchor_size=4)
    decoder = keras_hub.layers.NonMaxSuppression(
        bounding_box_format="xyxy", from_logits=True, confidence_threshold=0.01, max_detections=50)
    detector = keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone, num_classes=num_classes, bounding_box_format="xyxy", anchor_generator=anchors,
        pre_logits_num_conv_layers=1, prediction_decoder=decoder)
    prior_bias = -np.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
    cls_bias = detector.classification_head.prediction_layer.bias
    cls_bias.assign(np.full(cls_bias.shape, prior_bias, np.float32))
    box_bias = detector.box_head.prediction_layer.bias
    box_bias.assign(np.zeros(box_bias.shape, np.float32))
    return detector


def scaled(images):
    """Pixels in [0, 1]: without a KerasHub preprocessor the backbone sees raw input."""
    return images.astype("float32") / 255.0


def classification_loss(method, num_classes):
    """`EqualizedFocalLoss` (used as is) or the focal baseline, both summed."""
    if method == "efl":
        return keras_eql.EqualizedFocalLoss(num_classes=num_classes, reduction="sum")

    return SummedFocalLoss(num_classes)


class SummedFocalLoss(keras.losses.Loss):
    """KerasHub's focal loss summed (not averaged) over the class axis, as EFL is."""

    def __init__(self, num_classes):
        super().__init__(reduction="sum", name="focal")
        self.num_classes = num_classes

    def call(self, y_true, y_pred):
        return self.num_classes * keras.losses.binary_focal_crossentropy(
            y_true, y_pred, apply_class_balancing=True, alpha=0.25, gamma=2.0, from_logits=True)


def evaluate(detector, val, train_counts):
    """COCO AP overall and per LVIS group, from KerasHub's decoded predictions."""
    predictions = detector.predict(scaled(val["images"]), batch_size=32, verbose=0)
    results = []
    for index in range(len(val["images"])):
        for k in range(int(predictions["num_detections"][index])):
            x0, y0, x1, y1 = (float(v) for v in predictions["boxes"][index, k])
            results.append({"image_id": index + 1, "category_id": int(predictions["labels"][index, k]) + 1,
                            "bbox": [x0, y0, x1 - x0, y1 - y0],
                            "score": float(predictions["confidence"][index, k])})
    return grouped_coco_ap(val["coco"], results, train_image_counts=train_counts)


def main(argv=None):
    """Train and evaluate every method; returns `{method: metrics}`."""
    args = parse_args(argv)
    if keras_hub is None:
        raise SystemExit("kerashub_retinanet.py needs keras-hub: pip install keras-hub")
    strategy, jit_compile = _common.resolve_strategy(args.strategy, args.jit_compile)
    num_classes = _synthetic.NUM_CATEGORIES
    train, val = _synthetic.long_tailed_detection(args.scale, args.val_images_per_category, args.seed)
    train_counts = images_per_category(train["coco"])
    targets = {"boxes": train["boxes"], "labels": train["labels"].astype("float32")}
    batch_size = min(args.batch_size, len(train["images"]))
    print(f"{len(train['images'])} training images, {len(val['images'])} validation images.")
    results = {}
    for method in args.methods:
        _common.start_method(method, args.seed)
        with _common.scope(strategy):
            detector = build_detector(num_classes)
            loss = classification_loss(method, num_classes)
            detector.compile(optimizer=keras.optimizers.Adam(args.learning_rate, global_clipnorm=35.0),
                             classification_loss=loss, box_loss=keras.losses.Huber(reduction="sum"),
                             jit_compile=jit_compile)
        # KerasHub's fit takes arrays; the last partial batch is dropped for static shapes.
        usable = len(train["images"]) // batch_size * batch_size
        seconds = _common.timed_fit(detector, scaled(train["images"][:usable]),
                                    {k: v[:usable] for k, v in targets.items()},
                                    batch_size=batch_size, epochs=args.epochs, verbose=args.verbose)
        results[method] = {**evaluate(detector, val, train_counts), "seconds": seconds,
                           **_common.statistics_summary(loss, ("positive", "ratio"))}
    return _common.report(args, results, ("AP", "APr", "APc", "APf"),
                          "RetinaNet COCO box AP (%), balanced validation set")


if __name__ == "__main__":
    main()
