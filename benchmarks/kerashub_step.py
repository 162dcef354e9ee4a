"""A KerasHub RetinaNet's `fit` step with EqualizedFocalLoss vs KerasHub's own focal loss.

The overhead a detector user feels: `keras_hub.models.RetinaNetObjectDetector`
built from config (a small ResNet + FPN on P2-P3, no downloaded weights, fixed
image size), compiled with `jit_compile=True` (KerasHub's default optimizer and
box loss), trained with `model.fit` on new images and boxes every step. Its
`compute_loss` passes the classification loss dense one-hot targets
`(batch, anchors, C)` with `1 / num_positives` sample weights. Variants:

* `focal (KerasHub)`: `classification_loss="auto"`, KerasHub's
  `BinaryFocalCrossentropy(from_logits=True, reduction="sum")`;
* `EqualizedFocalLoss`: `EqualizedFocalLoss(num_classes=C, reduction="sum")`,
  as `examples/kerashub_retinanet.py` uses it (`targets="any"`);
* `EqualizedFocalLoss[one_hot]`: the same with `targets="one_hot"` (every
  anchor has at most one class).

Each round calls `fit` once per variant on `--steps-per-fit` batches (each
batch timed by a callback, the first of each call dropped); rounds rotate the
order; ratios divide two medians of the same run (wall clock / process CPU).

Examples:
    python benchmarks/kerashub_step.py --smoke
    python benchmarks/kerashub_step.py --repeats 6 --steps-per-fit 6 --json kerashub.json
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402

import keras_eql  # noqa: E402

try:
    import keras_hub
except ImportError:  # main() says so
    keras_hub = None

COUNTERPART = "focal (KerasHub)"
TARGET = 1.03


def build_detector(num_classes, image_size):
    """A small RetinaNet from config: ResNet (basic blocks, two stages) + FPN on P2-P3."""
    shape = (image_size, image_size, 3)
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 64],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        image_shape=shape)
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder, min_level=2, max_level=3, use_p5=False, image_shape=shape)
    anchors = keras_hub.layers.AnchorGenerator(
        "xyxy", min_level=2, max_level=3, num_scales=3, aspect_ratios=[1.0], anchor_size=4)
    return keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone, num_classes=num_classes, bounding_box_format="xyxy",
        anchor_generator=anchors, pre_logits_num_conv_layers=1)


def variants(num_classes):
    return {
        COUNTERPART: lambda: "auto",
        "EqualizedFocalLoss": lambda: keras_eql.EqualizedFocalLoss(
            num_classes=num_classes, reduction="sum"),
        "EqualizedFocalLoss[one_hot]": lambda: keras_eql.EqualizedFocalLoss(
            num_classes=num_classes, reduction="sum", targets="one_hot"),
    }


class Batches:
    """New images, boxes and long-tailed classes for every round (`steps` batches)."""

    def __init__(self, args):
        self.args = args

    def get(self, round_index):
        args = self.args
        rows = args.batch_size * args.steps_per_fit
        rng = np.random.default_rng([7, round_index])
        images = rng.uniform(0.0, 1.0, (rows, args.image_size, args.image_size, 3))
        size = rng.uniform(8.0, args.image_size / 3, (rows, args.boxes, 1))
        corner = rng.uniform(0.0, args.image_size - size, (rows, args.boxes, 2))
        boxes = np.concatenate([corner, corner + size], -1)
        weights = 0.7 ** np.arange(args.num_classes)
        labels = rng.choice(args.num_classes, (rows, args.boxes), p=weights / weights.sum())
        padded = rng.random((rows, args.boxes)) < 0.3  # fewer objects in some images
        labels = np.where(padded, -1, labels)
        return (tf.constant(images.astype(np.float32)),
                {"boxes": tf.constant(boxes.astype(np.float32)),
                 "labels": tf.constant(labels.astype(np.float32))})


def run(args):
    table = variants(args.num_classes)
    if args.smoke:  # two detectors to build, not three (test time)
        del table["EqualizedFocalLoss"]
    models = {}
    for name, make_loss in table.items():
        keras.utils.set_random_seed(0)
        detector = build_detector(args.num_classes, args.image_size)
        detector.compile(classification_loss=make_loss(), jit_compile=args.jit_compile)
        models[name] = detector
    batches = Batches(args)
    log(f"{len(models)} variants, {args.repeats} rounds of {args.steps_per_fit} steps")
    wall, cpu = _timing.interleaved_fit(
        models, lambda name, index: batches.get(index), batch_size=args.batch_size,
        steps=args.steps_per_fit, repeats=args.repeats, warmup=args.warmup, progress=log)
    return [{"variant": name, "counterpart": name == COUNTERPART,
             "times_ms": [1e3 * t for t in wall[name]], "cpu_ms": [1e3 * t for t in cpu[name]],
             "median_ms": 1e3 * _timing.median(wall[name]),
             "median_cpu_ms": 1e3 * _timing.median(cpu[name])} for name in table]


def summarise(results):
    base = next(r for r in results if r["counterpart"])
    return [{"variant": r["variant"], "against": COUNTERPART,
             "ratio": r["median_ms"] / base["median_ms"],
             "cpu_ratio": r["median_cpu_ms"] / base["median_cpu_ms"], "target": TARGET}
            for r in results if not r["counterpart"]]


def print_report(results, ratios):
    print("\n## medians per fit step, ms (wall clock | process CPU time)")
    for r in results:
        print(f"{r['variant']:30s} {r['median_ms']:9.2f} | {r['median_cpu_ms']:9.2f}")
    print(f"\n## ratios of medians, same run (wall | CPU); target <= {TARGET}")
    for row in ratios:
        verdicts = ["PASS" if value <= TARGET else "FAIL" for value in (row["ratio"], row["cpu_ratio"])]
        print(f"{row['variant']:30s} vs {row['against']:18s} {row['ratio']:6.3f} {verdicts[0]} |"
              f" {row['cpu_ratio']:6.3f} {verdicts[1]}")


def log(message):
    print(message, file=sys.stderr, flush=True)


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-classes", type=int, default=80)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--boxes", type=int, default=6, help="boxes per image (some padded)")
    parser.add_argument("--steps-per-fit", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds (compilation)")
    parser.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--json", help="write every time and ratio to this file")
    parser.add_argument("--smoke", action="store_true",
                        help="CI: tiny detector, one round, KerasHub's loss and EFL[one_hot] only")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_classes, args.image_size, args.batch_size = 5, 32, 2
        args.steps_per_fit, args.repeats, args.warmup = 2, 1, 0
    return args


def main(argv=None):
    args = parse(argv)
    if keras_hub is None:
        raise SystemExit("kerashub_step.py needs keras-hub: pip install keras-hub")
    return _timing.report(args, run(args), summarise, print_report)


if __name__ == "__main__":
    sys.exit(main())
