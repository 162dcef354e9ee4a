"""A small anchor-free dense detector and its COCO evaluation glue.

FCOS-style (Tian et al., 2019) on one stride-4 feature map: every location
whose centre lies within `1.5 * stride` of a ground-truth box's centre (and
inside the box) is a positive of that box, the smallest box winning ties;
the rest is background. Targets are computed once in NumPy, so the
training step sees static shapes and no host callback (XLA, TPU-ready).

Label layout (keras_eql's): `0..C-1` categories, `C` background.

Backends: the model and its losses are `keras.ops`, so they train under
TensorFlow and JAX alike. Only the evaluation's NMS differs: TensorFlow's
`tf.image.combined_non_max_suppression` in the graph, elsewhere the same
selection in NumPy on the host (`combined_nms`).
"""

import numpy as np
import keras
from keras import ops

STRIDE = 4
CENTRE_RADIUS = 1.5
PRIOR_PROBABILITY = 0.001  # the authors' init_prior for the sigmoid classifiers


def grid_centres(image_size, stride=STRIDE):
    """Pixel centres of the feature-map locations.

    Args:
        image_size: image side in pixels.
        stride: feature-map stride.

    Returns:
        `(L, 2)` float32 `(x, y)` centres, row-major, `L = (size // stride) ** 2`.

    Example:
        >>> grid_centres(8)[:3].tolist()
        [[2.0, 2.0], [6.0, 2.0], [2.0, 6.0]]
    """
    side = image_size // stride
    coords = (np.arange(side, dtype=np.float32) + 0.5) * stride
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def assign_targets(boxes, labels, image_size, num_classes, stride=STRIDE):
    """Per-location class labels and box targets (centre sampling).

    Args:
        boxes: float `(N, M, 4)` xyxy ground-truth boxes.
        labels: int `(N, M)` category ids, -1 for padding.
        image_size: image side.
        num_classes: `C`; background locations get label `C`.
        stride: feature-map stride.

    Returns:
        `(location_labels, location_boxes)`: int32 `(N, L)` and float32
        `(N, L, 4)` (the assigned xyxy box, zeros on background).
    """
    centres = grid_centres(image_size, stride)[None, :, None, :]           # 1, L, 1, 2
    boxes = boxes[:, None, :, :]                                           # N, 1, M, 4
    box_centres = (boxes[..., :2] + boxes[..., 2:]) / 2
    inside = np.all((centres >= boxes[..., :2]) & (centres < boxes[..., 2:]), axis=-1)
    near = np.all(np.abs(centres - box_centres) <= CENTRE_RADIUS * stride, axis=-1)
    valid = inside & near & (labels[:, None, :] >= 0)
    area = np.prod(boxes[..., 2:] - boxes[..., :2], axis=-1)
    area = np.where(valid, np.broadcast_to(area, valid.shape), np.inf)
    winner = np.argmin(area, axis=-1)                                      # N, L
    positive = np.isfinite(np.min(area, axis=-1))
    chosen_labels = np.take_along_axis(labels, winner, axis=1)
    chosen_boxes = np.take_along_axis(boxes[:, 0], winner[..., None], axis=1)
    location_labels = np.where(positive, chosen_labels, num_classes).astype(np.int32)
    location_boxes = np.where(positive[..., None], chosen_boxes, 0.0).astype(np.float32)
    return location_labels, location_boxes


def box_iou_and_giou(predicted, target):
    """Element-wise IoU and generalised IoU (Rezatofighi et al.) of xyxy boxes.

    Args:
        predicted: float tensor `(..., 4)`.
        target: float tensor `(..., 4)`.

    Returns:
        `(iou, giou)`, each of shape `(...)`.
    """
    area = lambda b: ops.maximum(b[..., 2] - b[..., 0], 0.0) * ops.maximum(b[..., 3] - b[..., 1], 0.0)  # noqa: E731
    top_left = ops.maximum(predicted[..., :2], target[..., :2])
    bottom_right = ops.minimum(predicted[..., 2:], target[..., 2:])
    inter = ops.prod(ops.maximum(bottom_right - top_left, 0.0), axis=-1)
    union = area(predicted) + area(target) - inter
    iou = inter / ops.maximum(union, 1e-6)
    hull = ops.prod(ops.maximum(predicted[..., 2:], target[..., 2:])
                    - ops.minimum(predicted[..., :2], target[..., :2]), axis=-1)
    return iou, iou - (hull - union) / ops.maximum(hull, 1e-6)


def global_sum(value):
    """Sum a tensor over replicas; a no-op on one device.

    Normalisers such as the number of positives must be global so that the
    summed replica gradients equal the single-device gradient. Only
    `tf.distribute` runs a step per replica; under JAX,
    `keras.distribution` compiles one global-view program (a sum over the
    batch is already the global sum), so there is nothing to do.

    Args:
        value: a tensor, in replica context.

    Returns:
        The sum over all replicas.
    """
    if keras.backend.backend() != "tensorflow":
        return value
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


class DenseDetector(keras.Model):
    """Backbone, classification tower (sigmoid, prior 0.001) and ltrb box tower.

    `compute_loss` adds the classification loss (built by
    `classification_loss(labels, logits, quality)`) and a GIoU box loss
    normalised by the global number of positives, as FCOS/ATSS do.

    Args:
        num_classes: categories `C`.
        classification_loss: callable `(labels (B, L), logits (B, L, C),
            quality (B, L)) -> scalar`; `quality` is the detached IoU of the
            predicted box with its target (0 on background), for QFL/EQFL.
        width: filters of the convolutions.
        image_size: input side.
        box_weight: weight of the box loss.
        classifier_kernel: kernel size of the classifier convolution (1 keeps
            a 1203-category head affordable on a CPU).
        tower_dilations: one 3 x 3 convolution of the classification tower
            per entry, with that dilation (more and wider ones see more of
            an object: `(1, 2, 4)` sees 71 pixels at stride 4).
    """

    def __init__(self, num_classes, classification_loss, width=48, image_size=64, box_weight=2.0,
                 classifier_kernel=3, tower_dilations=(1,), **kwargs):
        layers = keras.layers
        images = keras.Input((image_size, image_size, 3), name="images")
        x = layers.Rescaling(1 / 255.0)(images)
        for index, (filters, stride) in enumerate(((width // 2, 2), (width, 2), (width, 1))):
            x = layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu",
                              name=f"backbone_{index}")(x)
        cls = x
        for index, dilation in enumerate(tower_dilations):
            cls = layers.Conv2D(width, 3, padding="same", dilation_rate=dilation, activation="relu",
                                name=f"cls_tower_{index}")(cls)
        bias = -np.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
        cls = layers.Conv2D(num_classes, classifier_kernel, padding="same", name="cls",
                            bias_initializer=keras.initializers.Constant(bias))(cls)
        box = layers.Conv2D(width, 3, padding="same", activation="relu")(x)
        box = layers.Conv2D(4, 3, padding="same", name="box")(box)
        side = image_size // STRIDE
        outputs = {"cls": layers.Reshape((side * side, num_classes))(cls),
                   "box": layers.Reshape((side * side, 4))(box)}
        super().__init__(images, outputs, **kwargs)
        self.num_classes = num_classes
        self.classification_loss = classification_loss
        self.box_weight = box_weight
        self.centres = grid_centres(image_size)  # NumPy: a constant of every traced step

    def compile(self, *args, **kwargs):
        """`keras.Model.compile`, then `keras_eql.attach` of the classification loss's statistics.

        `compute_loss` calls the classification loss itself, so `compile`
        gets no loss. Its keras_eql loss (the callable's `.loss`) becomes
        `model.loss` for the output `cls` after `compile` (Keras reads
        `model.loss` only inside `compile`): there `keras_eql.attach` (JAX:
        the statistics become model state), `keras_eql.gradient_statistics`
        and `GradientStatisticsLogger` find it.
        """
        super().compile(*args, **kwargs)
        loss = getattr(self.classification_loss, "loss", None)
        if loss is not None:
            import keras_eql

            self.loss = {"cls": loss}
            keras_eql.attach(self)

    def decode_boxes(self, box_output):
        """xyxy boxes from the ltrb output (distances in strides, softplus)."""
        distances = ops.softplus(ops.cast(box_output, "float32")) * STRIDE
        centres = ops.convert_to_tensor(self.centres)
        return ops.concatenate([centres - distances[..., :2], centres + distances[..., 2:]], axis=-1)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        labels, target_boxes = y["labels"], y["boxes"]
        predicted = self.decode_boxes(y_pred["box"])
        positive = ops.cast(labels < self.num_classes, "float32")
        iou, giou = box_iou_and_giou(predicted, target_boxes)
        quality = ops.stop_gradient(iou) * positive
        classification = self.classification_loss(labels, y_pred["cls"], quality)
        num_positive = ops.maximum(global_sum(ops.sum(positive)), 1.0)
        box_loss = ops.sum((1.0 - giou) * positive) / num_positive
        return classification + self.box_weight * box_loss

    def detect(self, images, max_detections=50, score_threshold=0.01):
        """Boxes, scores and classes after per-class NMS (static shapes).

        Under TensorFlow a graph (trace it with `tf.function`); elsewhere
        the model runs compiled (`predict_on_batch`) and the NMS in NumPy
        (`combined_nms`), with the same selection rules.
        """
        size = float(images.shape[1])
        if keras.backend.backend() != "tensorflow":
            outputs = self.predict_on_batch(images)
            boxes = np.asarray(ops.convert_to_numpy(self.decode_boxes(outputs["box"])))
            scores = 1.0 / (1.0 + np.exp(-outputs["cls"].astype(np.float64)))
            boxes, scores, classes, valid = combined_nms(
                boxes / size, scores.astype(np.float32), max_output_size_per_class=10,
                max_total_size=max_detections, iou_threshold=0.5, score_threshold=score_threshold)
            return boxes * size, scores, classes, valid
        import tensorflow as tf

        outputs = self(images, training=False)
        boxes = self.decode_boxes(outputs["box"])
        scores = tf.sigmoid(tf.cast(outputs["cls"], tf.float32))
        nms = tf.image.combined_non_max_suppression(
            boxes[:, :, None, :] / size, scores, max_output_size_per_class=10,
            max_total_size=max_detections, iou_threshold=0.5, score_threshold=score_threshold,
            clip_boxes=True)
        return nms.nmsed_boxes * size, nms.nmsed_scores, nms.nmsed_classes, nms.valid_detections


def _pairwise_iou(box, boxes):
    top_left = np.maximum(box[:2], boxes[:, :2])
    bottom_right = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=-1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0.0, None), axis=-1)  # noqa: E731
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def combined_nms(boxes, scores, *, max_output_size_per_class, max_total_size, iou_threshold,
                 score_threshold):
    """`tf.image.combined_non_max_suppression` (boxes shared by the classes, clipped) in NumPy.

    Per image and class: the boxes scoring above `score_threshold`, best
    first, each dropping the later ones that overlap it by IoU above
    `iou_threshold`, at most `max_output_size_per_class` kept; then the
    `max_total_size` best of every class, padded with zeros.

    Args:
        boxes: `(B, L, 4)` corner boxes in [0, 1] coordinates.
        scores: `(B, L, C)` scores.
        max_output_size_per_class, max_total_size, iou_threshold,
            score_threshold: as in TensorFlow.

    Returns:
        `(boxes (B, K, 4) clipped to [0, 1], scores (B, K), classes (B, K)
        float, valid (B,) int32)`, `K = max_total_size`.

    Example:
        >>> boxes = np.array([[[0, 0, .5, .5], [0, 0, .5, .49], [.5, .5, 1, 1]]], np.float32)
        >>> scores = np.array([[[.9], [.8], [.7]]], np.float32)
        >>> out = combined_nms(boxes, scores, max_output_size_per_class=5, max_total_size=4,
        ...                    iou_threshold=0.5, score_threshold=0.01)
        >>> out[1].tolist(), out[3].tolist()
        ([[0.8999999761581421, 0.699999988079071, 0.0, 0.0]], [2])
    """
    batch, _, num_classes = scores.shape
    out_boxes = np.zeros((batch, max_total_size, 4), np.float32)
    out_scores = np.zeros((batch, max_total_size), np.float32)
    out_classes = np.zeros((batch, max_total_size), np.float32)
    valid = np.zeros((batch,), np.int32)
    for image in range(batch):
        kept = []  # (score, class, location)
        for category in range(num_classes):
            column = scores[image, :, category]
            candidates = np.flatnonzero(column > score_threshold)
            candidates = candidates[np.argsort(-column[candidates], kind="stable")]
            chosen = []
            while candidates.size and len(chosen) < max_output_size_per_class:
                best, candidates = candidates[0], candidates[1:]
                chosen.append(best)
                overlap = _pairwise_iou(boxes[image, best], boxes[image, candidates])
                candidates = candidates[overlap <= iou_threshold]
            kept += [(column[location], category, location) for location in chosen]
        kept.sort(key=lambda item: -item[0])
        kept = kept[:max_total_size]
        valid[image] = len(kept)
        for slot, (score, category, location) in enumerate(kept):
            out_boxes[image, slot] = np.clip(boxes[image, location], 0.0, 1.0)
            out_scores[image, slot], out_classes[image, slot] = score, category
    return out_boxes, out_scores, out_classes, valid


def sigmoid_focal_loss(targets, logits, alpha=0.25, gamma=2.0):
    """Element-wise focal loss (Lin et al., 2017) from logits, the `focal` baseline.

    Args:
        targets: 0/1 float tensor, the logits' shape.
        logits: raw logits.
        alpha: weight of positives (`1 - alpha` for negatives).
        gamma: focusing parameter.

    Returns:
        The unreduced loss, the logits' shape.
    """
    probability = ops.sigmoid(logits)
    p_t = targets * probability + (1 - targets) * (1 - probability)
    log_p_t = -ops.binary_crossentropy(targets, logits, from_logits=True)
    alpha_t = targets * alpha + (1 - targets) * (1 - alpha)
    return -alpha_t * (1 - p_t) ** gamma * log_p_t


def quality_focal_loss(quality_targets, logits, beta=2.0):
    """Element-wise quality focal loss (Li et al., GFL, 2020), the `qfl` baseline.

    `BCE(z, q) * |q - sigmoid(z)| ** beta` with IoU-quality targets `q`.

    Args:
        quality_targets: floats in [0, 1], the logits' shape.
        logits: raw logits.
        beta: focusing parameter.

    Returns:
        The unreduced loss, the logits' shape.
    """
    probability = ops.sigmoid(logits)
    bce = ops.binary_crossentropy(quality_targets, logits, from_logits=True)
    return bce * ops.abs(quality_targets - probability) ** beta


def to_coco_results(boxes, scores, classes, valid, image_ids):
    """COCO-format detections from batched `DenseDetector.detect` outputs.

    Args:
        boxes: `(B, K, 4)` xyxy boxes.
        scores: `(B, K)` scores.
        classes: `(B, K)` class ids `0..C-1`.
        valid: `(B,)` number of valid detections per image.
        image_ids: `(B,)` COCO image ids.

    Returns:
        A list of `{"image_id", "category_id" (class + 1), "bbox" [x, y, w, h], "score"}`.
    """
    results = []
    for image_boxes, image_scores, image_classes, count, image_id in zip(boxes, scores, classes, valid, image_ids):
        for box, score, category in zip(image_boxes[:count], image_scores[:count], image_classes[:count]):
            x0, y0, x1, y1 = (float(v) for v in box)
            results.append({"image_id": int(image_id), "category_id": int(category) + 1,
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)})
    return results


def object_crops(images, boxes, labels, size=32):
    """`size` x `size` windows centred on every object, at the image's scale.

    Args:
        images: `(N, S, S, 3)` uint8 images.
        boxes: float `(N, M, 4)` xyxy boxes.
        labels: int `(N, M)`, -1 for padding.
        size: the window's side (even).

    Returns:
        `(crops, crop_labels)`: `(K, size, size, 3)` and `(K,)` for the K objects.
    """
    half = size // 2
    padded = np.pad(images, ((0, 0), (half, half), (half, half), (0, 0)))
    image_index, slot = np.nonzero(labels >= 0)
    centres = np.round((boxes[image_index, slot, :2] + boxes[image_index, slot, 2:]) / 2).astype(int)
    crops = np.stack([padded[i, y:y + size, x:x + size] for i, (x, y) in zip(image_index, centres)])
    return crops, labels[image_index, slot].astype(np.int32)


def pretrain_features(detector, crops, crop_labels, *, epochs, learning_rate, seed, batch_size=256):
    """Pre-train the backbone and classification tower as a crop classifier.

    The stand-in for the ImageNet pre-training every detector of the paper
    starts from: the detector's `backbone_*` and `cls_tower_*` convolutions
    (same configurations) classify the training objects' crops from the
    feature at the crop's centre (softmax cross-entropy, random batches),
    then their weights are copied into the detector. The classifier and the
    box head are not touched, so every loss starts from the same features.

    Args:
        detector: a `DenseDetector`.
        crops: `(K, s, s, 3)` object crops (`object_crops`).
        crop_labels: `(K,)` their categories.
        epochs: passes over the crops.
        learning_rate: Adam's peak learning rate (cosine decay, 5 % warm-up).
        seed: initialisation and shuffling seed.
        batch_size: crops per step.

    Returns:
        The crop classifier's training accuracy in the last epoch.
    """
    import _common

    layers = keras.layers
    feature_layers = [layer for layer in detector.layers if layer.name.startswith(("backbone_", "cls_tower_"))]
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(crops.shape[1:])
    x = layers.Rescaling(1 / 255.0)(inputs)
    clones = []
    for layer in feature_layers:
        clones.append(type(layer).from_config(layer.get_config()))
        x = clones[-1](x)
    side = x.shape[1]
    # The detector classifies an object at the locations around its centre.
    centre = layers.GlobalAveragePooling2D()(layers.Cropping2D(side // 2 - 1)(x))
    outputs = layers.Dense(detector.num_classes)(centre)
    classifier = keras.Model(inputs, outputs)
    data, steps_per_epoch = _common.shuffled_batches(crops, crop_labels, batch_size, seed)
    steps = steps_per_epoch * epochs
    classifier.compile(_common.warmup_cosine_adam(learning_rate, steps, warmup_steps=steps // 20),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"], jit_compile=True)
    history = classifier.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=0)
    for layer, clone in zip(feature_layers, clones):
        layer.set_weights(clone.get_weights())
    return float(history.history["accuracy"][-1])


def detect_in_batches(detect, images, batch_size):
    """COCO-format detections of `images` (image ids 1..N), `batch_size` at a time.

    The last batch is padded to `batch_size`: one traced shape, as on an
    accelerator.

    Args:
        detect: `DenseDetector.detect` (traced with `tf.function` under TensorFlow).
        images: `(N, H, W, 3)` array.
        batch_size: images per call.

    Returns:
        The list of `to_coco_results` dicts for every image.
    """
    results = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        count = len(batch)
        batch = np.concatenate([batch, np.zeros((batch_size - count,) + batch.shape[1:], batch.dtype)])
        outputs = [np.asarray(t)[:count] for t in detect(batch)]
        results += to_coco_results(*outputs, np.arange(start, start + count) + 1)
    return results
