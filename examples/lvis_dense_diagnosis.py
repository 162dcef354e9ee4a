"""Why the LVIS-scale dense detector scores 0 AP: does it learn boxes, classes, or neither?

Trains one dense method of `lvis_scale.py` with the same flags, then measures
on the validation images' positive locations (centre sampling): the mean IoU
of the predicted box with its target, the top-1 accuracy of the 1203-way
classification, the same at the level of glyph families (101, chance 1 %),
and the median sigmoid score of the true category against all categories.

    python examples/lvis_dense_diagnosis.py --methods focal --seed 0   # lvis_scale.py's setting
    python examples/lvis_dense_diagnosis.py --methods focal --pretrain-epochs 0 --dense-learning-rate 1e-3 --epochs 1
"""

import _common
import _detection
import _lvis_data
import lvis_scale
import numpy as np
import tensorflow as tf


def main(argv=None):
    args = lvis_scale.parse_args(argv)
    _, jit_compile = _common.resolve_strategy("default", args.jit_compile)
    C = lvis_scale.NUM_CLASSES
    structure = _lvis_data.category_templates()
    counts = _lvis_data.scaled_counts(_lvis_data.lvis_image_counts(), args.count_divisor / args.scale)
    train = _lvis_data.detection_split(counts, args.seed, structure)
    val = _lvis_data.detection_split(np.full(C, args.val_images_per_category), args.seed + 100_003, structure)
    labels, boxes = _detection.assign_targets(train["boxes"], train["labels"], _lvis_data.IMAGE_SIZE, C)
    val_labels, val_boxes = _detection.assign_targets(val["boxes"], val["labels"], _lvis_data.IMAGE_SIZE, C)
    data, steps_per_epoch = _common.shuffled_batches(train["images"], {"labels": labels, "boxes": boxes},
                                                     args.batch_size, args.seed)
    steps = steps_per_epoch * args.epochs
    compute, _ = lvis_scale.dense_loss(args.methods[0], args.scale_factor)
    _common.start_method(args.methods[0], args.seed)
    model = _detection.DenseDetector(C, compute, width=args.detector_width, image_size=_lvis_data.IMAGE_SIZE,
                                     classifier_kernel=1, tower_dilations=args.tower_dilations)
    model.compile(_common.warmup_cosine_adam(args.dense_learning_rate, steps, warmup_steps=steps // 10,
                                             global_clipnorm=35.0), jit_compile=jit_compile)
    if args.pretrain_epochs > 0:
        crops, crop_labels = _detection.object_crops(train["images"], train["boxes"], train["labels"])
        accuracy = _detection.pretrain_features(model, crops, crop_labels, epochs=args.pretrain_epochs,
                                                learning_rate=args.dense_learning_rate, seed=args.seed)
        print(f"crop classifier accuracy after pre-training: {accuracy:.3f}")
    model.fit(data, epochs=args.epochs, steps_per_epoch=steps_per_epoch, verbose=args.verbose)
    outputs = model.predict(val["images"], batch_size=32, verbose=0)
    positive = val_labels < C
    scores = tf.sigmoid(outputs["cls"][positive]).numpy()
    truth = val_labels[positive]
    predicted = scores.argmax(-1)
    iou, _ = _detection.box_iou_and_giou(model.decode_boxes(tf.constant(outputs["box"])), tf.constant(val_boxes))
    family = structure["family"]
    result = {"box_iou": float(np.mean(iou.numpy()[positive])),
              "top1": float(np.mean(predicted == truth)),
              "family_top1": float(np.mean(family[predicted] == family[truth])),
              "median_true_score": float(np.median(scores[np.arange(len(truth)), truth])),
              "median_score": float(np.median(scores))}
    print({key: round(value, 4) for key, value in result.items()})
    return result


if __name__ == "__main__":
    main()
