"""LVIS-scale synthetic data: 1203 glyph categories with LVIS v1's long tail.

Used by `lvis_scale.py`. Everything is NumPy and seeded; the only input is
`data/lvis_v1_image_counts.json` (LVIS v1's per-category training image
counts, 1203 categories) and matplotlib's bundled DejaVu Sans font, so
nothing is downloaded and no system package is needed.

Why glyphs. The benchmark needs 1203 categories that are (1) learnable from
one or two examples, so that rarity, not an impossible task, limits the rare
categories, and (2) related in families, so that a rare category has
frequent look-alikes whose RoIs are hard negatives for it: the situation in
LVIS (e.g. a rare "egg roll" among frequent "sausages"), where the negative
gradient from similar frequent classes swamps a rare class's few positives.
Procedurally rendered glyphs give both at any count:

* A category is a (base glyph, diacritic) pair: 101 base glyphs (Latin,
  Greek, Cyrillic letters and digits, chosen so that no two normalised
  glyphs correlate above `MAX_BASE_CORRELATION`) times 12 marks (none,
  acute, grave, circumflex, tilde, macron, breve, dot above, diaeresis,
  ring, caron, dot below) = 1212 pairs, of which a fixed random
  permutation picks 1203.
* A family is the categories sharing a base glyph: they differ only by a
  small mark (hard negatives), as accented letters do. Categories sharing a
  mark share that part too, so a rare pair can be composed from features
  its frequent relatives teach (shape from its family, mark from others).
* That permutation also decides which pair gets which LVIS category's
  count, so most families mix rare, common and frequent categories.
* Measured (`family_similarity`, centred cosine of the templates): 0.79
  within a family, -0.01 across families.

Fashion-MNIST compositions were the alternative; Debian's package is not
always installed and the data would then be missing, whereas matplotlib
always ships DejaVu. `font_source()` records the font file in the results.

Scaling: category `k` appears in exactly `max(1, round(n_k / divisor))`
training images (`n_k` its LVIS v1 image count, `round` Python's), at most
once per image. The LVIS groups always come from the unscaled counts
(`lvis_groups`): rare 1-10 images, common 11-100, frequent > 100.

Images are 128 x 128: a dark noisy background with clutter (random strokes
and stray diacritics, which look like parts of objects) and up to 9 objects,
one per cell of a 3 x 3 grid (so objects never overlap), each a glyph of
random size (18-30 px tile), aspect (+-10 %), position in its cell and
colour. A box is the glyph's inked extent (mark included). Validation and
test splits are balanced: every category in the same number of images.
"""

import json
import os
import unicodedata

import numpy as np

NUM_CATEGORIES = 1203
# LVIS v1's training set: 100,170 images (the denominator of EQL v1's
# image frequency f_j; its LVIS v1 threshold lambda = 0.0011 is relative to it).
LVIS_V1_TRAIN_IMAGES = 100170
COUNTS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "lvis_v1_image_counts.json")
FONT_FILE = "DejaVuSans.ttf"
IMAGE_SIZE = 128
GRID = 3  # GRID x GRID cells, at most one object each
OBJECTS_PER_IMAGE = 8
TILE_HEIGHT, TILE_WIDTH = 36, 28  # template canvas: mark band, base, lower mark band
MAX_BASE_CORRELATION = 0.85
NUM_BASES = 101  # x 12 marks = 1212 pairs >= 1203
# Candidate base glyphs in order of preference; near-duplicates (after size
# normalisation, e.g. Greek Phi and Cyrillic Ef) are skipped.
BASE_CANDIDATES = ("ABCDEFGHIJKLMNOPQRSTUVWXYZ" "abdefghijkmnpqrty" "23456789"
                   "ΓΔΘΛΞΠΣΦΨΩ" "αβγδεζηθλμξπσφψως" "БДЖЗИЛФЦЧШЩЭЮЯЪЫ" "бжлфчюяšħŧđŋ" "ÆŒØÞßæœø&@#$%?§¶€£¥")
# (name, character, position): spacing forms of the diacritics.
MARKS = (("none", None, None), ("acute", "\u00b4", "above"), ("grave", "`", "above"),
         ("circumflex", "\u02c6", "above"), ("tilde", "\u02dc", "above"), ("macron", "\u00af", "above"),
         ("breve", "\u02d8", "above"), ("dot", "\u02d9", "above"), ("diaeresis", "\u00a8", "above"),
         ("ring", "\u02da", "above"), ("caron", "\u02c7", "above"), ("dot_below", "\u02d9", "below"))
_CATEGORY_PERMUTATION_SEED = 2021  # fixed: which (base, mark) pair gets which LVIS count


def font_source():
    """The path of the DejaVu Sans font matplotlib ships (recorded in the results)."""
    import matplotlib

    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", FONT_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"lvis_scale: matplotlib's bundled font {path} is missing; reinstall matplotlib.")
    return path


def lvis_image_counts(path=COUNTS_PATH):
    """LVIS v1's training image count of each of its 1203 categories (index = id - 1)."""
    with open(path) as handle:
        data = json.load(handle)
    counts = np.asarray(data["image_count"], np.int64)
    if counts.shape != (NUM_CATEGORIES,) or list(data["category_ids"]) != list(range(1, NUM_CATEGORIES + 1)):
        raise ValueError(f"lvis_scale: {path} must list 1203 categories with ids 1..1203.")
    return counts


def scaled_counts(counts, divisor):
    """`max(1, round(count / divisor))` per category (Python's `round`: half to even).

    Example:
        >>> scaled_counts([1, 25, 35, 1977], 10).tolist()
        [1, 2, 4, 198]
    """
    return np.maximum(1, np.rint(np.asarray(counts, np.float64) / divisor)).astype(np.int64)


def lvis_groups(counts):
    """`{"rare", "common", "frequent"}` category ids by LVIS's thresholds on unscaled counts."""
    counts = np.asarray(counts)
    return {"rare": np.flatnonzero(counts <= 10).tolist(),
            "common": np.flatnonzero((counts > 10) & (counts <= 100)).tolist(),
            "frequent": np.flatnonzero(counts > 100).tolist()}


def _glyph_bitmap(font, character):
    """Antialiased coverage of one character, cropped to its ink, floats in [0, 1]."""
    font.clear()
    font.set_size(64, 72)
    font.set_text(character, 0.0)
    font.draw_glyphs_to_bitmap(antialiased=True)
    image = np.asarray(font.get_image(), np.float32) / 255.0
    rows, cols = np.flatnonzero(image.max(1) > 0.1), np.flatnonzero(image.max(0) > 0.1)
    if rows.size == 0:
        raise ValueError(f"lvis_scale: {FONT_FILE} renders nothing for {character!r}.")
    return image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _resize(image, height, width):
    """Bilinear resize of a float image (PIL, which matplotlib requires)."""
    from PIL import Image

    return np.asarray(Image.fromarray(image.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))


def _fit(bitmap, max_height, max_width):
    scale = min(max_height / bitmap.shape[0], max_width / bitmap.shape[1])
    height, width = max(1, round(bitmap.shape[0] * scale)), max(1, round(bitmap.shape[1] * scale))
    return np.clip(_resize(bitmap, height, width), 0.0, 1.0)


def _base_templates(font):
    """(characters, normalised bitmaps 20 x 24) of the chosen base glyphs."""
    chosen, bitmaps, vectors = [], [], []
    for character in BASE_CANDIDATES:
        fitted = _fit(_glyph_bitmap(font, character), 20, 24)
        canvas = np.zeros((20, 24), np.float32)
        top, left = (20 - fitted.shape[0]) // 2, (24 - fitted.shape[1]) // 2
        canvas[top:top + fitted.shape[0], left:left + fitted.shape[1]] = fitted
        # Compare shapes normalised as instances are (size and position).
        vector = canvas.ravel() - canvas.mean()
        vector /= np.linalg.norm(vector)
        if vectors and max(float(vector @ v) for v in vectors) > MAX_BASE_CORRELATION:
            continue
        chosen.append(character), bitmaps.append(canvas), vectors.append(vector)
        if len(chosen) == NUM_BASES:
            return chosen, bitmaps
    raise ValueError(f"lvis_scale: only {len(chosen)} distinct base glyphs, {NUM_BASES} needed.")


def category_templates():
    """The 1203 category templates and their structure.

    Returns:
        A dict: `templates` float32 `(1203, 36, 28)` ink coverage in [0, 1],
        `family` int `(1203,)` (the base glyph's index), `mark` int `(1203,)`
        (index into `MARKS`), `names` (e.g. `"e+acute"`), `bases` (the base
        characters) and `mark_bitmaps` (for background clutter). Category
        `k` gets LVIS category `k + 1`'s count; the (base, mark) pair of
        each category is a fixed permutation of all pairs.
    """
    from matplotlib import ft2font

    font = ft2font.FT2Font(font_source())
    bases, base_bitmaps = _base_templates(font)
    pairs = [(b, m) for b in range(len(bases)) for m in range(len(MARKS))]
    mark_bitmaps = [None if character is None else _fit(_glyph_bitmap(font, character), 6, 12)
                    for _, character, _ in MARKS]
    order = np.random.default_rng(_CATEGORY_PERMUTATION_SEED).permutation(len(pairs))[:NUM_CATEGORIES]
    templates = np.zeros((NUM_CATEGORIES, TILE_HEIGHT, TILE_WIDTH), np.float32)
    family, mark = np.zeros(NUM_CATEGORIES, np.int64), np.zeros(NUM_CATEGORIES, np.int64)
    names = []
    for k, pair in enumerate(order):
        base, mark_index = pairs[pair]
        family[k], mark[k] = base, mark_index
        templates[k, 8:28, 2:26] = base_bitmaps[base]
        bitmap, position = mark_bitmaps[mark_index], MARKS[mark_index][2]
        if bitmap is not None:
            columns = np.flatnonzero(base_bitmaps[base].max(0) > 0.1)
            centre = 2 + (columns[0] + columns[-1] + 1) / 2
            left = int(round(centre - bitmap.shape[1] / 2))
            top = 7 - bitmap.shape[0] if position == "above" else 29
            region = templates[k, top:top + bitmap.shape[0], left:left + bitmap.shape[1]]
            np.maximum(region, bitmap, out=region)
        names.append(f"{bases[base]}+{MARKS[mark_index][0]}")
    return {"templates": templates, "family": family, "mark": mark, "names": names, "bases": bases,
            "mark_bitmaps": [b for b in mark_bitmaps if b is not None]}


def family_similarity(templates, family):
    """Mean cosine similarity of centred templates within and across families.

    Args:
        templates: `(C, H, W)` category templates.
        family: `(C,)` family index of each category.

    Returns:
        `{"within": float, "across": float}`: the mean over pairs of distinct
        categories of the same family, and over pairs of different families.
    """
    vectors = templates.reshape(len(templates), -1).astype(np.float64)
    vectors = vectors - vectors.mean(axis=0)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ vectors.T
    same = family[:, None] == family[None, :]
    distinct = ~np.eye(len(family), dtype=bool)
    return {"within": float(similarity[same & distinct].mean()), "across": float(similarity[~same].mean())}


def _assign_images(counts, objects_per_image, rng):
    """Category lists per image: category `k` in exactly `counts[k]` distinct images.

    Each category (most frequent first) goes to the least loaded images
    (random among ties), so every image holds `objects_per_image` objects
    or one fewer, at most `GRID ** 2`.
    """
    counts = np.asarray(counts, np.int64)
    num_images = max(int(np.ceil(counts.sum() / objects_per_image)), int(counts.max()))
    load = np.zeros(num_images, np.int64)
    images = [[] for _ in range(num_images)]
    for category in np.argsort(-counts, kind="stable"):
        chosen = np.argsort(load + rng.random(num_images), kind="stable")[:counts[category]]
        load[chosen] += 1
        for image in chosen:
            images[image].append(int(category))
    for categories in images:
        rng.shuffle(categories)
    return images


def _clutter(image, rng, mark_bitmaps):
    """Random strokes and stray diacritics: background that looks like object parts."""
    size = image.shape[0]
    for _ in range(int(rng.integers(4, 9))):
        start, end = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
        steps = int(np.hypot(*(end - start))) * 2 + 2
        points = np.round(start + np.linspace(0, 1, steps)[:, None] * (end - start)).astype(int)
        points = np.clip(points, 0, size - 1)
        image[points[:, 1], points[:, 0]] = rng.uniform(60, 200, 3)
    for _ in range(int(rng.integers(2, 6))):
        bitmap = mark_bitmaps[int(rng.integers(len(mark_bitmaps)))]
        top, left = rng.integers(0, size - bitmap.shape[0]), rng.integers(0, size - bitmap.shape[1])
        region = image[top:top + bitmap.shape[0], left:left + bitmap.shape[1]]
        region[:] = region * (1 - bitmap[..., None]) + rng.uniform(120, 255, 3) * bitmap[..., None]


def render_image(categories, structure, rng, image_size=IMAGE_SIZE):
    """Draw up to `GRID ** 2` glyph objects, one per grid cell, on a cluttered background.

    Args:
        categories: category ids, one object each.
        structure: `category_templates()`.
        rng: a `np.random.Generator`.
        image_size: side of the square image.

    Returns:
        `(image, boxes)`: uint8 `(S, S, 3)` and float32 `(n, 4)` xyxy ink boxes.
    """
    if len(categories) > GRID * GRID:
        raise ValueError(f"lvis_scale: {len(categories)} objects for {GRID * GRID} cells.")
    image = rng.normal(45, 10, (image_size, image_size, 3)) + rng.normal(0, 15, (1, 1, 3))
    _clutter(image, rng, structure["mark_bitmaps"])
    cell = image_size / GRID
    cells = rng.permutation(GRID * GRID)[:len(categories)]
    boxes = []
    for category, position in zip(categories, cells):
        height = int(rng.integers(18, 31))
        width = max(8, int(round(height * TILE_WIDTH / TILE_HEIGHT * rng.uniform(0.9, 1.1))))
        alpha = np.clip(_resize(structure["templates"][category], height, width), 0.0, 1.0)
        cell_y, cell_x = divmod(int(position), GRID)
        top = int(cell_y * cell + rng.uniform(0, max(cell - height, 0)))
        left = int(cell_x * cell + rng.uniform(0, max(cell - width, 0)))
        colour = rng.uniform(110, 255, 3)
        region = image[top:top + height, left:left + width]
        region[:] = region * (1 - alpha[..., None]) + colour * alpha[..., None]
        ys, xs = np.nonzero(alpha > 0.3)
        boxes.append([left + xs.min(), top + ys.min(), left + xs.max() + 1, top + ys.max() + 1])
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), np.asarray(boxes, np.float32).reshape(-1, 4)


def detection_split(counts, seed, structure, *, objects_per_image=OBJECTS_PER_IMAGE, image_size=IMAGE_SIZE):
    """Images where category `k` appears in exactly `counts[k]` images (once in each).

    Args:
        counts: images per category.
        seed: NumPy seed (images, placement and clutter).
        structure: `category_templates()`.
        objects_per_image: target objects per image (at most `GRID ** 2`).
        image_size: image side.

    Returns:
        A dict like `_synthetic.detection_split`'s: `images` uint8
        `(N, S, S, 3)`, `boxes` float32 `(N, 9, 4)`, `labels` int32 `(N, 9)`
        padded with -1, and `coco` (category ids `k + 1`).
    """
    rng = np.random.default_rng(seed)
    per_image = _assign_images(counts, objects_per_image, rng)
    slots = GRID * GRID
    n = len(per_image)
    images = np.zeros((n, image_size, image_size, 3), np.uint8)
    boxes = np.zeros((n, slots, 4), np.float32)
    labels = np.full((n, slots), -1, np.int32)
    annotations = []
    for i, categories in enumerate(per_image):
        images[i], image_boxes = render_image(categories, structure, rng, image_size)
        boxes[i, :len(categories)], labels[i, :len(categories)] = image_boxes, categories
        for box, category in zip(image_boxes, categories):
            x0, y0, x1, y1 = (float(v) for v in box)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": category + 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    coco = {"images": [{"id": i + 1, "width": image_size, "height": image_size} for i in range(n)],
            "annotations": annotations,
            "categories": [{"id": k + 1, "name": structure["names"][k]} for k in range(len(counts))]}
    return {"images": images, "boxes": boxes, "labels": labels, "coco": coco}


def base_name(character):
    """A readable name of a base glyph, e.g. `"GREEK SMALL LETTER ALPHA"`."""
    return unicodedata.name(character, repr(character))
