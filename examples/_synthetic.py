"""Procedurally generated long-tailed detection and segmentation data.

Shared by `detection_lt.py`, `two_stage_lt.py`, `segmentation_lt.py` and
`kerashub_retinanet.py`. Everything is NumPy and seeded, so every example
sees the same images for the same seed and the tests need no download.

Categories are (shape, colour) pairs: 6 shapes x 6 colours = 36 categories,
ordered by training frequency with a fixed random permutation, so rare
categories share their shape or their colour with frequent ones (the
confusion that suppresses rare classes in LVIS). Training frequencies follow
a Zipf-Mandelbrot law, `n_k = n_max * (b / (k + b)) ** a` images for the
k-th category (500 images down to 4 with the defaults): 6 frequent (> 100
images), 17 common (11-100) and 13 rare (<= 10) categories under the LVIS
thresholds. Evaluation sets are balanced: every category appears in the
same number of images, as in the balanced test sets of classification LT.
"""

import numpy as np

SHAPES = ("square", "disc", "triangle", "cross", "ring", "diamond")
COLOURS = ((230, 60, 60), (60, 200, 60), (70, 90, 240), (230, 210, 50), (210, 70, 210), (60, 210, 220))
NUM_CATEGORIES = len(SHAPES) * len(COLOURS)
_CATEGORY_ORDER = np.random.default_rng(1234).permutation(NUM_CATEGORIES)


def category_spec(category):
    """`(shape index, RGB colour)` of a category id."""
    combo = int(_CATEGORY_ORDER[category])
    return combo // len(COLOURS), COLOURS[combo % len(COLOURS)]


def category_names():
    """Names like `"red-disc"`, indexed by category id."""
    colour_names = ("red", "green", "blue", "yellow", "magenta", "cyan")
    return [f"{colour_names[COLOURS.index(category_spec(k)[1])]}-{SHAPES[category_spec(k)[0]]}"
            for k in range(NUM_CATEGORIES)]


def zipf_image_counts(num_categories=NUM_CATEGORIES, n_max=500, offset=6.0, exponent=2.5, scale=1.0):
    """Training images per category, `n_max * (offset / (k + offset)) ** exponent`.

    Args:
        num_categories: number of categories.
        n_max: images of the most frequent category.
        offset: Zipf-Mandelbrot offset `b` (flattens the head).
        exponent: Zipf exponent `a`.
        scale: multiplies every count (smoke runs use a small scale); every
            category keeps at least one image.

    Returns:
        An int array of counts, most frequent first.

    Example:
        >>> zipf_image_counts()[[0, 5, 35]].tolist()
        [500, 110, 4]
    """
    ranks = np.arange(num_categories)
    counts = n_max * (offset / (ranks + offset)) ** exponent * scale
    return np.maximum(1, np.round(counts)).astype(np.int64)


def _shape_mask(shape, size, yy, xx, centre_y, centre_x):
    dy, dx = yy - centre_y, xx - centre_x
    half = size / 2.0
    radius = np.hypot(dy, dx)
    if shape == 0:
        return (np.abs(dy) <= half) & (np.abs(dx) <= half)
    if shape == 1:
        return radius <= half
    if shape == 2:
        return (dy >= -half) & (dy <= half) & (np.abs(dx) <= (dy + half) / 2)
    if shape == 3:
        arm = max(size / 6.0, 1.5)
        return ((np.abs(dy) <= arm) & (np.abs(dx) <= half)) | ((np.abs(dx) <= arm) & (np.abs(dy) <= half))
    if shape == 4:
        return (radius <= half) & (radius >= half - max(size / 5.0, 2.0))
    return np.abs(dy) + np.abs(dx) <= half


def _box_iou(box, boxes):
    if len(boxes) == 0:
        return np.zeros(0)
    boxes = np.asarray(boxes, np.float64)
    top_left = np.maximum(box[:2], boxes[:, :2])
    bottom_right = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def render_image(categories, rng, image_size=64, min_size=10, max_size=24):
    """Draw objects of the given categories on a noisy background.

    Args:
        categories: category ids, one object each.
        rng: a `np.random.Generator`.
        image_size: side of the square image.
        min_size: smallest object side in pixels.
        max_size: largest object side in pixels.

    Returns:
        `(image, boxes, masks)`: uint8 `(S, S, 3)`, float `(n, 4)` boxes
        `[x0, y0, x1, y1]` (exclusive right/bottom edge) and bool `(n, S, S)`
        visible masks (later objects occlude earlier ones).
    """
    grid = np.arange(image_size, dtype=np.float32) + 0.5
    yy, xx = grid[:, None], grid[None, :]
    image = rng.normal(40, 12, (image_size, image_size, 3))
    image += rng.normal(0, 25, (1, 1, 3))  # per-image tint, so colour alone is not trivial
    boxes, masks = [], []
    for category in categories:
        shape, colour = category_spec(category)
        for _ in range(20):  # retry placements that overlap a previous object too much
            size = rng.uniform(min_size, max_size)
            centre = rng.uniform(size / 2 + 1, image_size - size / 2 - 1, 2)
            mask = _shape_mask(shape, size, yy, xx, centre[0], centre[1])
            ys, xs = np.nonzero(mask)
            box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
            if np.all(_box_iou(box, boxes) < 0.3):
                break
        shade = np.asarray(colour) * rng.uniform(0.75, 1.1) + rng.normal(0, 12, (image_size, image_size, 3))
        image = np.where(mask[..., None], shade, image)
        masks = [m & ~mask for m in masks]
        boxes.append(box)
        masks.append(mask)
    return np.clip(image, 0, 255).astype(np.uint8), np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(masks)


def _image_categories(image_counts, rng, max_objects):
    """Distribute category occurrences over images, 1..max_objects per image."""
    tokens = np.repeat(np.arange(len(image_counts)), image_counts)
    rng.shuffle(tokens)
    images, start = [], 0
    while start < len(tokens):
        take = int(rng.integers(1, max_objects + 1))
        images.append(tokens[start:start + take].tolist())
        start += take
    return images


def detection_split(image_counts, seed, *, image_size=64, max_objects=4):
    """A detection split whose category `k` appears in about `image_counts[k]` images.

    Args:
        image_counts: per-category occurrences (an object each).
        seed: NumPy seed.
        image_size: image side.
        max_objects: most objects per image (also the padded box axis).

    Returns:
        A dict: `images` uint8 `(N, S, S, 3)`, `boxes` float32 `(N, M, 4)`
        xyxy, `labels` int32 `(N, M)` padded with -1, `masks` bool
        `(N, M, S, S)`, and `coco`, the COCO-format ground truth (category
        ids are `k + 1`, COCO reserves 0).
    """
    rng = np.random.default_rng(seed)
    per_image = _image_categories(np.asarray(image_counts), rng, max_objects)
    n = len(per_image)
    images = np.zeros((n, image_size, image_size, 3), np.uint8)
    boxes = np.zeros((n, max_objects, 4), np.float32)
    labels = np.full((n, max_objects), -1, np.int32)
    masks = np.zeros((n, max_objects, image_size, image_size), bool)
    annotations = []
    for i, categories in enumerate(per_image):
        image, image_boxes, image_masks = render_image(categories, rng, image_size)
        images[i], boxes[i, :len(categories)], labels[i, :len(categories)] = image, image_boxes, categories
        masks[i, :len(categories)] = image_masks
        for box, category in zip(image_boxes, categories):
            x0, y0, x1, y1 = (float(v) for v in box)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(category) + 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    names = category_names()
    coco = {"images": [{"id": i + 1, "width": image_size, "height": image_size} for i in range(n)],
            "annotations": annotations,
            "categories": [{"id": k + 1, "name": names[k]} for k in range(len(image_counts))]}
    return {"images": images, "boxes": boxes, "labels": labels, "masks": masks, "coco": coco}


def long_tailed_detection(scale=1.0, val_images_per_category=12, seed=0, image_size=64):
    """Long-tailed training split and balanced validation split.

    Args:
        scale: multiplies the training counts (1.0: about 860 images).
        val_images_per_category: occurrences of every category in validation.
        seed: seed of both splits (validation uses `seed + 1`).
        image_size: image side.

    Returns:
        `(train, val)` dicts from `detection_split`.
    """
    counts = zipf_image_counts(scale=scale)
    val_counts = np.full(NUM_CATEGORIES, max(1, int(val_images_per_category)))
    return (detection_split(counts, seed, image_size=image_size),
            detection_split(val_counts, seed + 1, image_size=image_size))


def segmentation_labels(split, num_categories=NUM_CATEGORIES):
    """Per-pixel labels `(N, S, S)`: the category id, `num_categories` for background."""
    labels = np.full(split["masks"].shape[:1] + split["masks"].shape[2:], num_categories, np.int32)
    for slot in range(split["masks"].shape[1]):
        present = split["labels"][:, slot] >= 0
        mask = split["masks"][:, slot] & present[:, None, None]
        labels = np.where(mask, split["labels"][:, slot, None, None], labels)
    return labels
