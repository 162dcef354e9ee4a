"""
Title: The Equalization Losses at LVIS's scale: 1203 long-tailed categories on a CPU
Author: keras_eql contributors
Description: A two-stage region classifier (BCE, Sigmoid-EQL, EQL v1, Seesaw,
    CE, Softmax-EQL) and a dense one-stage detector (focal, EFL, QFL, EQFL)
    on 1203 glyph categories with LVIS v1's real training frequencies.
Accelerator: CPU (GPU/TPU-ready: static shapes, no host callbacks in the step)

The data (`_lvis_data.py`): 1203 categories, each a (base glyph, diacritic)
pair, in families that share a base glyph (hard negatives). Category `k`
appears in `max(1, round(n_k / k_div))` training images, `n_k` its LVIS v1
image count and `k_div = --count-divisor / --scale` (10 by default: 36,275
training objects in 4,535 images of 128 x 128). Rare / common / frequent
are LVIS's groups of the unscaled counts (337 / 461 / 405). The validation
set is balanced: every category in `--val-images-per-category` images
(5 by default: 1,685 rare instances). No re-sampling: batches are random.

Two tasks on the same images, each (method, seed) one run (`--methods`,
`--seed`, `--output`):

(a) Two-stage region classification. RoIs are cropped from the images as in
    `two_stage_lt.py` (2 jittered RoIs with IoU >= 0.5 per object, background
    RoIs with IoU < 0.3 to every object) and classified by a small CNN whose
    biases start at prior 0.001. Methods and layouts:
    `bce`: `SigmoidEQL(objectness=True, reweight_negatives=False,
    reweight_positives=False)`, plain BCE on C + 1 columns that logs its
    statistics; `sigmoid_eql`: `SigmoidEQL(objectness=True)`; `eqlv1`:
    `EQLv1` on C columns, background rows all-negative, rare by LVIS v1's
    threshold lambda = 0.0011 on the unscaled image frequencies;
    `seesaw`: `SeesawLoss(objectness=True)` on C + 2 columns; `ce`:
    `SoftmaxEQL(tau=0)` (plain CE with statistics) and `softmax_eql`:
    `SoftmaxEQL()`, both on C + 1 softmax columns, background = class C.
(b) Dense one-stage detection (`_detection.DenseDetector`, stride 4, 32 x 32
    locations per image, 16 images: 16,384 locations per batch), focal
    (`EqualizedFocalLoss(scale=0)`), `efl` (s = 8), QFL
    (`EqualizedQualityFocalLoss(scale=0)`) and `eqfl` (s = 8), the authors'
    recipe: classifier bias at prior 0.001, linear warm-up, gradient
    clipping at global norm 35. The backbone and tower are first pre-trained
    on the training objects' crops (`--pretrain-epochs 5`, as a detector
    starts from an ImageNet backbone), then 3 epochs at a peak rate of 1e-2
    (`--dense-learning-rate`): from scratch, or at 1e-3, the detector finds
    the boxes but not the 1203 classes in a CPU budget (see
    `lvis_dense_diagnosis.py`).

Evaluation as LVIS does it: at most 300 detections per image across all
categories, applied before pycocotools (`grouped_coco_ap(...,
max_detections_per_image=300)`); AP@[.5:.95] overall and per group. For
(a), the validation RoIs are grouped into "images" of 64 RoIs; each RoI is
its own box, so AP counts a RoI's (category, score) as a hit when the
category is its label; top-1 accuracy per group on the foreground RoIs.

The JSON (`--output`) holds the metrics, the final per-category statistics
(positive, negative, ratio) and their history (about 12 points);
`lvis_tables.py` assembles the tables and figures from any set of runs.

    python examples/lvis_scale.py --methods bce --seed 0 --output runs/bce_seed0.json
    python examples/lvis_scale.py --smoke --methods bce,focal   # a few steps, for the tests
"""

import time

import _common
import _detection
import _lvis_data
import numpy as np
import tensorflow as tf
import two_stage_lt
import keras

import keras_eql
from keras_eql.baselines import EQLv1, SeesawLoss, seesaw_scores
from keras_eql.metrics import grouped_coco_ap

TWO_STAGE_METHODS = ("bce", "sigmoid_eql", "eqlv1", "seesaw", "ce", "softmax_eql")
DENSE_METHODS = ("focal", "efl", "qfl", "eqfl")
# The paper's ablations (Tan et al., TPAMI): Table 2 (Sigmoid-EQL's components;
# obj = `bce`, obj+neg+pos = `sigmoid_eql`), Table 9 (EFL's focusing and
# weighting factors), Table 10 (EFL's s; s = 0 is `focal`, 8 is `efl`, 12 is the
# fair try's third value) and Table 11 (FL+EQL vs EFL).
ABLATIONS = {"sigmoid_eql_neg": "sigmoid_eql", "efl_focusing": "efl", "efl_weighting": "efl",
             "efl_s2": "efl", "efl_s4": "efl", "efl_s12": "efl", "fl_eql": "efl"}
TWO_STAGE_METHODS += ("sigmoid_eql_neg",)
DENSE_METHODS += ("efl_focusing", "efl_weighting", "efl_s2", "efl_s4", "efl_s12", "fl_eql")
METHODS = TWO_STAGE_METHODS + DENSE_METHODS
MAIN_METHODS = tuple(m for m in METHODS if m not in ABLATIONS)  # the default `--methods`
# Each EQL loss and its own baseline (the same loss with re-weighting off).
BASELINES = {"sigmoid_eql": "bce", "softmax_eql": "ce", "efl": "focal", "eqfl": "qfl"}
NUM_CLASSES = _lvis_data.NUM_CATEGORIES
MAX_DETECTIONS = 300  # LVIS: per image, across categories
ROIS_PER_EVAL_IMAGE = 64
EQLV1_THRESHOLD = 0.0011  # lambda of EQL v1 on LVIS v1 (reference.md, section 6)
HISTORY_POINTS = 12


def _dilations(text):
    """`"1,2,4"` -> `(1, 2, 4)`, each a positive integer."""
    return tuple(_common.positive_int(part) for part in text.split(","))


def parse_args(argv=None):
    """Parse the flags (`--smoke` shrinks data, epochs, batches and steps)."""
    parser = _common.synthetic_parser(__doc__, example_file=__file__, epochs=3, methods=METHODS,
                                      default_methods=MAIN_METHODS,
                                      batch_size=16, learning_rate=1e-3)
    parser.set_defaults(val_images_per_category=5)
    parser.add_argument("--count-divisor", type=_common.positive_float, default=10.0,
                        help="k: category k_j appears in max(1, round(n_j / (k / scale))) training images")
    parser.add_argument("--roi-epochs", type=_common.positive_int, default=7, help="epochs of task (a)")
    parser.add_argument("--dense-learning-rate", type=_common.positive_float, default=1e-2,
                        help="peak learning rate of task (b) and its pre-training (--learning-rate is task (a)'s)")
    parser.add_argument("--rois-per-batch", type=_common.positive_int, default=256, help="batch of task (a)")
    parser.add_argument("--background-rois-per-image", type=_common.positive_int, default=16)
    parser.add_argument("--width", type=_common.positive_int, default=32, help="region classifier width")
    parser.add_argument("--detector-width", type=_common.positive_int, default=48)
    parser.add_argument("--tower-dilations", type=_dilations, default=(1,),
                        help="dilations of the dense classification tower's 3 x 3 convolutions, e.g. 1,2,4")
    parser.add_argument("--pretrain-epochs", type=int, default=None,
                        help="pre-train the dense backbone and tower on the training objects' crops first "
                             "(0: from scratch; default 5, 0 with --smoke)")
    parser.add_argument("--scale-factor", type=float, default=8.0, help="s of EFL/EQFL")
    parser.add_argument("--max-steps", type=int, default=0, help="stop each fit after this many steps (0: no limit)")
    args = _common.parse_synthetic_args(parser, argv, METHODS, smoke_scale=0.02, smoke_batch_size=2)
    if args.pretrain_epochs is None:
        # The smoke run trains every method; the diagnosis test covers pre-training.
        args.pretrain_epochs = 0 if args.smoke else 5
    if args.smoke:
        args.roi_epochs, args.rois_per_batch, args.max_steps = 1, 64, 3
    return args


class StatisticsHistory(keras.callbacks.Callback):
    """Records a keras_eql loss's per-class statistics every `every` steps and at the end."""

    def __init__(self, loss, every):
        super().__init__()
        self.loss, self.every, self.points, self.step = loss, max(1, every), [], 0

    def _record(self):
        statistics = self.loss.gradient_statistics()
        self.points.append({"step": self.step, **{key: statistics[key][:NUM_CLASSES].tolist()
                                                  for key in ("positive", "negative", "ratio")}})

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0:
            self._record()

    def on_train_end(self, logs=None):
        if not self.points or self.points[-1]["step"] != self.step:
            self._record()


def _rounded(values, digits=5):
    return [float(f"{v:.{digits}g}") for v in values]


def statistics_record(loss, history):
    """The run's statistics for the JSON: final positive/negative/ratio and the ratio's history."""
    if history is None:
        return {}
    final = history.points[-1]
    return {"statistics_steps": float(loss.statistics.steps.numpy()),
            **{key: _rounded(final[key]) for key in ("positive", "negative", "ratio")},
            "history": {"steps": [p["step"] for p in history.points],
                        "ratio": [_rounded(p["ratio"], 4) for p in history.points],
                        "positive": [_rounded(p["positive"], 4) for p in history.points],
                        "negative": [_rounded(p["negative"], 4) for p in history.points]}}


def fit(model, data, epochs, steps_per_epoch, args, history):
    """`model.fit` with the run's flags; returns wall-clock seconds."""
    if args.max_steps:
        steps_per_epoch = min(steps_per_epoch, args.max_steps)
    callbacks = [] if history is None else [history]
    return _common.timed_fit(model, data, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=args.verbose,
                             shuffle=False, callbacks=callbacks)


# -- (a) two-stage region classification --------------------------------------

def two_stage_loss(method, lvis_counts):
    """`(loss, number of logits)` of a two-stage method (see the module docstring)."""
    C = NUM_CLASSES
    if method == "bce":
        return keras_eql.SigmoidEQL(num_classes=C, objectness=True, reweight_negatives=False,
                                    reweight_positives=False, name="bce"), C + 1
    if method == "sigmoid_eql":
        return keras_eql.SigmoidEQL(num_classes=C, objectness=True), C + 1
    if method == "sigmoid_eql_neg":
        return keras_eql.SigmoidEQL(num_classes=C, objectness=True, reweight_positives=False,
                                    name=method), C + 1
    if method == "eqlv1":
        frequencies = np.asarray(lvis_counts, np.float64) / _lvis_data.LVIS_V1_TRAIN_IMAGES
        return EQLv1(class_frequencies=frequencies, frequency_threshold=EQLV1_THRESHOLD), C
    if method == "seesaw":
        return SeesawLoss(num_classes=C, objectness=True), C + 2
    if method == "ce":
        return keras_eql.SoftmaxEQL(num_classes=C + 1, tau=0.0, name="ce"), C + 1
    if method == "softmax_eql":
        return keras_eql.SoftmaxEQL(num_classes=C + 1), C + 1
    raise ValueError(f"lvis_scale: {method!r} is not a two-stage method.")


def two_stage_scores(method, logits):
    """`(R, C)` category scores of a two-stage head's logits."""
    if method in ("bce", "sigmoid_eql", "sigmoid_eql_neg"):
        scores = keras_eql.sigmoid_eql_scores(logits, objectness=True)
    elif method == "eqlv1":
        scores = tf.sigmoid(logits)
    elif method == "seesaw":
        scores = seesaw_scores(logits, objectness=True)
    else:
        scores = tf.nn.softmax(logits, axis=-1)
    return np.asarray(scores)[:, :NUM_CLASSES]


def roi_detections(scores, labels, rois_per_image=ROIS_PER_EVAL_IMAGE, max_detections=MAX_DETECTIONS):
    """COCO ground truth and capped detections of RoIs grouped into fixed-size images.

    RoI `r` becomes image `r // rois_per_image + 1` with its own box (RoIs of
    an image never overlap), so a detection hits exactly when its category is
    the RoI's label. Each image keeps its `max_detections` best (RoI,
    category) pairs across all categories.

    Args:
        scores: `(R, C)` category scores.
        labels: `(R,)` labels, `C` for background RoIs.
        rois_per_image: RoIs per evaluation image.
        max_detections: detections kept per image.

    Returns:
        `(ground_truth, detections)` in COCO format (category ids `k + 1`).
    """
    num_rois, num_classes = scores.shape
    columns = 8
    boxes = [[10.0 * (r % rois_per_image % columns), 10.0 * (r % rois_per_image // columns), 8.0, 8.0]
             for r in range(num_rois)]
    num_images = -(-num_rois // rois_per_image)
    ground_truth = {
        "images": [{"id": i + 1, "width": 10 * columns, "height": 10 * columns} for i in range(num_images)],
        "annotations": [{"id": r + 1, "image_id": r // rois_per_image + 1, "category_id": int(labels[r]) + 1,
                         "bbox": boxes[r], "area": 64.0, "iscrowd": 0}
                        for r in range(num_rois) if labels[r] < num_classes],
        "categories": [{"id": k + 1, "name": str(k)} for k in range(num_classes)]}
    detections = []
    for start in range(0, num_rois, rois_per_image):
        block = scores[start:start + rois_per_image].ravel()
        keep = min(max_detections, block.size)
        best = np.argpartition(-block, keep - 1)[:keep]
        for flat in best:
            roi, category = divmod(int(flat), num_classes)
            detections.append({"image_id": start // rois_per_image + 1, "category_id": category + 1,
                               "bbox": boxes[start + roi], "score": float(block[flat])})
    return ground_truth, detections


def evaluate_two_stage(scores, labels, groups, lvis_counts):
    """AP (LVIS cap, RoI images) and top-1 accuracy per group."""
    ground_truth, detections = roi_detections(scores, labels)
    counts = {k + 1: int(lvis_counts[k]) for k in range(NUM_CLASSES)}
    ap = grouped_coco_ap(ground_truth, detections, train_image_counts=counts,
                         max_detections_per_image=MAX_DETECTIONS)
    foreground = labels < NUM_CLASSES
    predicted = np.argmax(scores, axis=-1)
    accuracy = [float(np.mean(predicted[labels == k] == k)) if np.any(labels == k) else float("nan")
                for k in range(NUM_CLASSES)]
    return {"AP": ap["AP"], "AP_r": ap["APr"], "AP_c": ap["APc"], "AP_f": ap["APf"],
            "acc": float(np.mean(predicted[foreground] == labels[foreground])),
            **_common.grouped_metric("acc", accuracy, groups)}


def run_two_stage(method, args, rois, groups, lvis_counts, strategy, jit_compile):
    """Train and evaluate one two-stage method; returns its result dict."""
    (x_train, y_train), (x_val, y_val) = rois
    _common.start_method(method, args.seed)
    data, steps_per_epoch = _common.shuffled_batches(x_train, y_train, args.rois_per_batch, args.seed)
    steps = (min(steps_per_epoch, args.max_steps) if args.max_steps else steps_per_epoch) * args.roi_epochs
    with _common.scope(strategy):
        loss, outputs = two_stage_loss(method, lvis_counts)
        model = two_stage_lt.region_classifier(outputs, args.width)
        optimizer = _common.warmup_cosine_adam(args.learning_rate, steps, warmup_steps=steps // 20)
        model.compile(optimizer, loss=loss, jit_compile=jit_compile)
    history = StatisticsHistory(loss, steps // HISTORY_POINTS) if hasattr(loss, "gradient_statistics") else None
    seconds = fit(model, data, args.roi_epochs, steps_per_epoch, args, history)
    started = time.perf_counter()
    logits = model.predict(x_val, batch_size=1024, verbose=0)
    metrics = evaluate_two_stage(two_stage_scores(method, logits), y_val, groups, lvis_counts)
    return {**metrics, "seconds": seconds, "eval_seconds": round(time.perf_counter() - started, 1),
            "steps": steps, **statistics_record(loss, history)}


# -- (b) dense one-stage detection --------------------------------------------

def dense_keras_eql_loss(method, scale_factor):
    """The keras_eql loss of a dense method (`--scale-factor` is the s of `efl` and `eqfl`)."""
    options = dict(num_classes=NUM_CLASSES, reduction="sum", normalize_by_positives=True, name=method)
    if method == "fl_eql":
        return keras_eql.FocalSigmoidEQL(**options)
    if method in ("qfl", "eqfl"):
        return keras_eql.EqualizedQualityFocalLoss(scale=scale_factor if method == "eqfl" else 0.0, **options)
    scale = {"focal": 0.0, "efl_s2": 2.0, "efl_s4": 4.0, "efl_s12": 12.0}.get(method, scale_factor)
    return keras_eql.EqualizedFocalLoss(scale=scale, focusing_factor=method != "efl_weighting",
                                        weighting_factor=method != "efl_focusing", **options)


def dense_loss(method, scale_factor):
    """The classification loss of a dense method and its keras_eql loss (statistics)."""
    loss = dense_keras_eql_loss(method, scale_factor)
    quality_based = method in ("qfl", "eqfl")

    def compute(labels, logits, quality):
        logits = tf.cast(logits, tf.float32)
        if not quality_based:
            return loss(labels, logits)
        one_hot = tf.one_hot(labels, NUM_CLASSES + 1)[..., :NUM_CLASSES]
        # A positive keeps a non-zero quality, so it counts as a positive row.
        return loss(one_hot * tf.maximum(quality, 1e-4)[..., None], logits)

    return compute, loss


def make_detect(model, candidates=1000, max_detections=MAX_DETECTIONS, iou_threshold=0.5):
    """A batched detector: best `candidates` (location, category) pairs, class-aware NMS, at most 300 kept."""
    size = float(model.input_shape[1])

    @tf.function
    def detect(images):
        outputs = model(images, training=False)
        boxes = model.decode_boxes(outputs["box"])
        scores = tf.sigmoid(tf.cast(outputs["cls"], tf.float32))
        flat = tf.reshape(scores, [tf.shape(scores)[0], -1])
        top_scores, top_indices = tf.math.top_k(flat, candidates)
        locations, classes = top_indices // NUM_CLASSES, top_indices % NUM_CLASSES
        top_boxes = tf.clip_by_value(tf.gather(boxes, locations, batch_dims=1), 0.0, size)

        def one_image(inputs):
            image_boxes, image_scores, image_classes = inputs
            # Class-aware NMS in one call: boxes of different classes never overlap after the shift.
            shifted = image_boxes + tf.cast(image_classes, tf.float32)[:, None] * (2.0 * size)
            keep, count = tf.image.non_max_suppression_padded(
                shifted, image_scores, max_detections, iou_threshold=iou_threshold, pad_to_max_output_size=True)
            return tf.gather(image_boxes, keep), tf.gather(image_scores, keep), tf.gather(image_classes, keep), count

        return tf.map_fn(one_image, (top_boxes, top_scores, classes),
                         fn_output_signature=(tf.float32, tf.float32, tf.int32, tf.int32))

    return detect


def evaluate_dense(model, val, lvis_counts, batch_size):
    """COCO AP (LVIS cap) overall and per group on the validation images."""
    results = _detection.detect_in_batches(make_detect(model), val["images"], batch_size)
    counts = {k + 1: int(lvis_counts[k]) for k in range(NUM_CLASSES)}
    ap = grouped_coco_ap(val["coco"], results, train_image_counts=counts, max_detections_per_image=MAX_DETECTIONS)
    return {"AP": ap["AP"], "AP_r": ap["APr"], "AP_c": ap["APc"], "AP_f": ap["APf"]}


def run_dense(method, args, train, val, targets, lvis_counts, strategy, jit_compile):
    """Train and evaluate one dense method; returns its result dict."""
    labels, boxes = targets
    _common.start_method(method, args.seed)
    data, steps_per_epoch = _common.shuffled_batches(
        train["images"], {"labels": labels, "boxes": boxes}, args.batch_size, args.seed)
    steps = (min(steps_per_epoch, args.max_steps) if args.max_steps else steps_per_epoch) * args.epochs
    with _common.scope(strategy):
        compute, loss = dense_loss(method, args.scale_factor)
        model = _detection.DenseDetector(NUM_CLASSES, compute, width=args.detector_width,
                                         image_size=_lvis_data.IMAGE_SIZE, classifier_kernel=1,
                                         tower_dilations=args.tower_dilations)
        # Warm-up and gradient clipping, as the paper's EFL recipe (Section 5.2.2).
        optimizer = _common.warmup_cosine_adam(args.dense_learning_rate, steps, warmup_steps=steps // 10,
                                               global_clipnorm=35.0)
        model.compile(optimizer, jit_compile=jit_compile)
    pretraining = {}
    if args.pretrain_epochs > 0:
        started = time.perf_counter()
        crops, crop_labels = _detection.object_crops(train["images"], train["boxes"], train["labels"])
        accuracy = _detection.pretrain_features(model, crops, crop_labels, epochs=args.pretrain_epochs,
                                                learning_rate=args.dense_learning_rate, seed=args.seed)
        pretraining = {"pretrain_accuracy": accuracy, "pretrain_seconds": round(time.perf_counter() - started, 1)}
        print(f"pre-training: crop accuracy {accuracy:.3f} in {pretraining['pretrain_seconds']} s")
    history = StatisticsHistory(loss, steps // HISTORY_POINTS)
    seconds = fit(model, data, args.epochs, steps_per_epoch, args, history)
    started = time.perf_counter()
    metrics = evaluate_dense(model, val, lvis_counts, 32)
    return {**metrics, "seconds": seconds, "eval_seconds": round(time.perf_counter() - started, 1),
            "steps": steps, **pretraining, **statistics_record(loss, history)}


def main(argv=None):
    """Build the data, train and evaluate each requested method; returns `{method: metrics}`."""
    args = parse_args(argv)
    strategy, jit_compile = _common.resolve_strategy(args.strategy, args.jit_compile)
    started = time.perf_counter()
    structure = _lvis_data.category_templates()
    lvis_counts = _lvis_data.lvis_image_counts()
    groups = _lvis_data.lvis_groups(lvis_counts)
    divisor = args.count_divisor / args.scale
    train_counts = _lvis_data.scaled_counts(lvis_counts, divisor)
    train = _lvis_data.detection_split(train_counts, args.seed, structure)
    val = _lvis_data.detection_split(np.full(NUM_CLASSES, args.val_images_per_category), args.seed + 100_003,
                                     structure)
    similarity = _lvis_data.family_similarity(structure["templates"], structure["family"])
    data = {"font": _lvis_data.font_source(), "count_divisor": divisor, "train_objects": int(train_counts.sum()),
            "train_images": len(train["images"]), "val_images": len(val["images"]),
            "val_images_per_category": args.val_images_per_category,
            "family_similarity": similarity, "seconds": round(time.perf_counter() - started, 1)}
    print(f"{data['train_objects']} training objects in {data['train_images']} images (k = {divisor:g}), "
          f"{len(val['images'])} validation images; groups " + ", ".join(f"{len(v)} {k}" for k, v in groups.items())
          + f"; template similarity within / across families {similarity['within']:.2f} / "
          f"{similarity['across']:.2f}")
    results, rois, targets = {}, None, None
    for method in args.methods:
        if method in TWO_STAGE_METHODS:
            if rois is None:
                rois = (two_stage_lt.sample_rois(train, NUM_CLASSES, args.seed, 2, args.background_rois_per_image),
                        two_stage_lt.sample_rois(val, NUM_CLASSES, args.seed + 1, 1, args.background_rois_per_image))
                data["train_rois"], data["val_rois"] = len(rois[0][1]), len(rois[1][1])
            results[method] = run_two_stage(method, args, rois, groups, lvis_counts, strategy, jit_compile)
        else:
            if targets is None:
                targets = _detection.assign_targets(train["boxes"], train["labels"], _lvis_data.IMAGE_SIZE,
                                                    NUM_CLASSES)
            results[method] = run_dense(method, args, train, val, targets, lvis_counts, strategy, jit_compile)
        print({k: round(v, 4) for k, v in results[method].items() if isinstance(v, float)})
    return _common.report(args, results, ("AP", "AP_r", "AP_c", "AP_f"),
                          "LVIS-style AP (%), 300 detections per image", data=data, groups=groups,
                          lvis_image_counts=lvis_counts.tolist(), train_counts=train_counts.tolist())


if __name__ == "__main__":
    main()
