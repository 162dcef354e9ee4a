"""Long-tail evaluation: accuracy per frequency group and COCO AP per group.

Three groupings, one rule per name everywhere in keras_eql (`GroupedAccuracy`,
`GradientStatisticsLogger`, the plots, `class_groups`):

* `"shots"`, **many / medium / few** (OLTR, Liu et al. 2019): more than 100
  training samples, 20-100, fewer than 20. A group may be empty (CIFAR-10-LT
  gives 8 / 2 / 0 classes).
* `"lvis"`, **frequent / common / rare** (LVIS, Gupta et al. 2019): more than
  100 training images, 11-100, at most 10.
* `"thirds"`, **head / medium / tail**: equal thirds by frequency rank
  (`rank_groups`; the `keras-eql demo` groups, `keras_eql.data.head_medium_tail`).

Any other grouping is given as a mapping `{name: [class ids]}` or as one group
label per class (e.g. LVIS's `frequency` field, `"r"`, `"c"`, `"f"`).

pycocotools is an optional extra (`pip install keras-eql[coco]`), imported
only when `grouped_coco_ap` runs.
"""

import contextlib
import copy
import io
import json
import numbers

import keras
import numpy as np
from keras import ops

SHOT_GROUPS = ("many", "medium", "few")
LVIS_GROUPS = ("frequent", "common", "rare")
THIRD_GROUPS = ("head", "medium", "tail")
# The grouping rules `class_groups` knows by name; each name always means one rule.
GROUPINGS = {"thirds": THIRD_GROUPS, "shots": SHOT_GROUPS, "lvis": LVIS_GROUPS}
# Per-class label sets drawn in a fixed order (frequent first) rather than as met.
_KNOWN_ORDERS = (THIRD_GROUPS, SHOT_GROUPS, LVIS_GROUPS, ("f", "c", "r"))


def _check_counts(label, counts, *, minimum_length=1):
    """`counts` as a 1-D float64 array of finite non-negative values."""
    try:
        array = np.asarray(counts, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{label}: expected a 1-D sequence of counts, got {counts!r}.") from None
    if array.ndim != 1 or array.size < minimum_length:
        raise ValueError(
            f"{label}: expected a 1-D sequence of at least {minimum_length} "
            f"counts, got shape {array.shape} from {counts!r}.")
    bad = ~np.isfinite(array) | (array < 0)
    if bad.any():
        raise ValueError(
            f"{label}: counts must be finite and non-negative, got "
            f"{array[bad][0]!r} at index {int(np.flatnonzero(bad)[0])}.")
    return array


def _threshold_groups(counts, *, above, below):
    """0 where `count > above`, 2 where `count < below`, 1 otherwise."""
    return np.where(counts > above, 0, np.where(counts < below, 2, 1))


def rank_groups(values):
    """Equal thirds by rank: 0 for the largest third, 2 for the smallest.

    Classes are ranked by `values` in decreasing order (ties keep class
    order); `np.array_split` gives the first thirds the extra classes, so
    group sizes differ by at most one and every group is populated when
    there are at least three classes.

    Args:
        values: 1-D per-class frequencies (counts, or a proxy such as the
            accumulated positive gradient).

    Returns:
        An int array of group ids (0, 1, 2), one per class.

    Example:
        >>> rank_groups([5, 50, 500, 1, 20]).tolist()
        [1, 0, 0, 2, 1]
    """
    values = _check_counts("rank_groups", values)
    order = np.argsort(-values, kind="stable")
    groups = np.empty(values.size, dtype=np.int64)
    for group, members in enumerate(np.array_split(order, 3)):
        groups[members] = group
    return groups


def frequency_groups(class_counts):
    """Many (0) / medium (1) / few (2) group of each class from its counts.

    OLTR's rule: many-shot if the class has more than 100 training samples,
    few-shot if it has fewer than 20, medium otherwise. A group may be empty;
    for equal thirds by frequency use `rank_groups`.

    Args:
        class_counts: 1-D training sample counts per class.

    Returns:
        An int array of group ids, one per class.

    Example:
        >>> frequency_groups([500, 150, 60, 30, 10, 5]).tolist()
        [0, 0, 1, 1, 2, 2]
        >>> frequency_groups([5000, 2997, 50]).tolist()  # no few-shot class
        [0, 0, 1]
    """
    counts = _check_counts("frequency_groups", class_counts)
    return _threshold_groups(counts, above=100, below=20)


def lvis_groups(image_counts):
    """Frequent (0) / common (1) / rare (2) group of each class, as LVIS defines them.

    Args:
        image_counts: 1-D number of training images per class.

    Returns:
        An int array of group ids: more than 100 images frequent, 11-100
        common, at most 10 rare.

    Example:
        >>> lvis_groups([1523, 101, 100, 11, 10, 1]).tolist()
        [0, 0, 1, 1, 2, 2]
    """
    counts = _check_counts("lvis_groups", image_counts)
    return _threshold_groups(counts, above=100, below=11)


def _group_order(labels):
    """Distinct labels, in a known frequent-first order or else as first met."""
    distinct = list(dict.fromkeys(labels))
    for order in _KNOWN_ORDERS:
        if set(distinct) <= set(order):
            return [name for name in order if name in distinct]
    return distinct


def class_groups(groups="thirds", class_counts=None, *, num_classes=None, rank_by=None, label="class_groups"):
    """Resolve a grouping of the classes into `{group name: [class ids]}`.

    Args:
        groups: one of
            * `"thirds"`: head / medium / tail, equal thirds by the rank of
              `class_counts`, or of `rank_by` without counts;
            * `"shots"`: many / medium / few by `frequency_groups(class_counts)`;
            * `"lvis"`: frequent / common / rare by `lvis_groups(class_counts)`
              (counts of training images);
            * a mapping `{name: [class ids]}`, e.g.
              `keras_eql.data.head_medium_tail(counts)`; a class may be in no
              group, not in two;
            * a sequence of one group label per class, e.g. LVIS's
              `frequency` field (`"f"`, `"c"`, `"r"`).
        class_counts: training samples (or images) per class; needed by
            `"shots"` and `"lvis"`.
        num_classes: number of classes, when `class_counts` does not say.
        rank_by: per-class values standing in for the counts of `"thirds"`
            when `class_counts` is None (the logger passes the accumulated
            positive gradient).
        label: prefix of error messages (who is asking).

    Returns:
        An ordered dict `{name: sorted class ids}`, frequent groups first. A
        rule gives all three of its groups, an empty one as `[]`.

    Example:
        >>> class_groups("shots", [500, 150, 60, 30, 10])
        {'many': [0, 1], 'medium': [2, 3], 'few': [4]}
        >>> class_groups(["r", "f", "c", "f"])
        {'f': [1, 3], 'c': [2], 'r': [0]}
    """
    counts = None if class_counts is None else _check_counts(f"{label}: class_counts", class_counts)
    if num_classes is None and counts is not None:
        num_classes = counts.size
    if counts is not None and counts.size != num_classes:
        raise ValueError(f"{label}: class_counts has {counts.size} entries for {num_classes} classes.")
    if isinstance(groups, str):
        if groups not in GROUPINGS:
            raise ValueError(f"{label}: unknown groups {groups!r}; expected one of {sorted(GROUPINGS)}, "
                             "a mapping {name: [class ids]} or one label per class.")
        if groups == "thirds":
            values = counts if counts is not None else rank_by
            if values is None:
                raise ValueError(f"{label}: groups='thirds' needs class_counts.")
            ids = rank_groups(values)
        elif counts is None:
            raise ValueError(f"{label}: groups={groups!r} needs class_counts.")
        else:
            ids = frequency_groups(counts) if groups == "shots" else lvis_groups(counts)
        return {name: np.flatnonzero(ids == index).tolist() for index, name in enumerate(GROUPINGS[groups])}
    if isinstance(groups, dict):
        resolved, seen = {}, {}
        for name, members in groups.items():
            members = [members] if isinstance(members, numbers.Integral) else list(members)
            for member in members:
                if isinstance(member, bool) or not isinstance(member, numbers.Integral) or not (
                        num_classes is None or 0 <= member < num_classes):
                    raise ValueError(
                        f"{label}: group {name!r} lists {member!r}, not a class id in 0..{num_classes - 1}.")
                if int(member) in seen:
                    raise ValueError(
                        f"{label}: class {int(member)} is in groups {seen[int(member)]!r} and {name!r}.")
                seen[int(member)] = name
            resolved[str(name)] = sorted(int(member) for member in members)
        return resolved
    try:
        labels = [str(value) for value in groups]
    except TypeError:
        raise ValueError(f"{label}: groups must be a name, a mapping or one label per class, "
                         f"got {groups!r:.200}.") from None
    if num_classes is not None and len(labels) != num_classes:
        raise ValueError(f"{label}: groups lists {len(labels)} labels for {num_classes} classes.")
    return {name: [index for index, value in enumerate(labels) if value == name]
            for name in _group_order(labels)}


def _group_ids(groups, num_classes):
    """Per-class index into `list(groups)` (-1: in no group) of a resolved grouping."""
    ids = np.full(num_classes, -1, dtype=np.int64)
    for index, members in enumerate(groups.values()):
        ids[members] = index
    return ids


@keras.saving.register_keras_serializable(package="keras_eql")
class GroupedAccuracy(keras.metrics.Metric):
    """Top-1 accuracy overall and per frequency group (many / medium / few-shot by default).

    Groups come from `class_groups(groups, class_counts)`: by default OLTR's
    many / medium / few-shot thresholds (more than 100 training samples,
    20-100, fewer than 20), the ones `GradientStatisticsLogger` and the plots
    use under the same names. Following OLTR's `shot_acc`, a group's accuracy
    is the mean of the per-class accuracies of its classes that have samples
    in the evaluated data; the overall value is the plain sample accuracy. A
    value with nothing to average over (an empty group, or no sample of its
    classes yet) is NaN. Labels outside `[0, C)` (e.g. an ignore label of -1)
    are skipped.

    Args:
        class_counts: training samples per class, length `C >= 2`.
        groups: `"shots"` (default), `"thirds"` (head / medium / tail by
            rank), `"lvis"`, a mapping `{name: [class ids]}` or one group
            label per class; see `class_groups`.
        name: metric name; the results are `name` and `name_<group>` for each
            group, e.g. `name_many`, `name_medium` and `name_few`.
        dtype: dtype of the result.

    Example:
        >>> import keras, keras_eql, numpy as np
        >>> metric = keras_eql.metrics.GroupedAccuracy([500, 60, 5])
        >>> metric.update_state(np.array([0, 1, 2, 2]), np.eye(3)[[0, 1, 2, 0]])
        >>> {k: round(float(v), 2) for k, v in metric.result().items()}
        {'grouped_accuracy': 0.75, 'grouped_accuracy_many': 1.0,
         'grouped_accuracy_medium': 1.0, 'grouped_accuracy_few': 0.5}
    """

    def __init__(self, class_counts, groups="shots", name="grouped_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        counts = _check_counts(type(self).__name__, class_counts, minimum_length=2)
        self.class_counts = counts.tolist()
        self.num_classes = counts.size
        resolved = class_groups(groups, counts, label=f"{type(self).__name__} '{name}'")
        # get_config: a rule by its name, anything else as the mapping it resolves to.
        self.groups = groups if isinstance(groups, str) else resolved
        self._group_names = tuple(resolved)
        self._groups = _group_ids(resolved, self.num_classes)
        shape = (self.num_classes,)
        self.correct = self.add_variable(shape=shape, initializer="zeros", name="correct")
        self.total = self.add_variable(shape=shape, initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulates hits and totals per true class.

        Args:
            y_true: sparse labels `(...)` or `(..., 1)`, or one-hot `(..., C)`.
            y_pred: scores or logits `(..., C)`.
            sample_weight: optional weights, one per row.
        """
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        if y_pred.shape[-1] != self.num_classes:
            raise ValueError(
                f"GroupedAccuracy '{self.name}': y_pred has {y_pred.shape[-1]} "
                f"columns (shape {y_pred.shape}), expected {self.num_classes} "
                "(the length of `class_counts`).")
        scores = ops.reshape(y_pred, (-1, self.num_classes))
        one_hot_labels = (len(y_true.shape) == len(y_pred.shape)
                          and y_true.shape[-1] == self.num_classes)
        if one_hot_labels:
            labels = ops.argmax(ops.reshape(y_true, (-1, self.num_classes)), axis=-1)
        else:
            labels = ops.reshape(y_true, (-1,))
        labels = ops.cast(labels, "int32")
        hits = ops.cast(ops.equal(ops.cast(ops.argmax(scores, axis=-1), "int32"), labels), "float32")
        weights = ops.ones_like(hits)
        if sample_weight is not None:
            weights = ops.reshape(ops.cast(sample_weight, "float32"), (-1,)) * weights
        # one_hot maps out-of-range labels to all-zero rows: they count nowhere.
        membership = ops.one_hot(labels, self.num_classes, dtype="float32")
        self.correct.assign_add(ops.sum(membership * (hits * weights)[:, None], axis=0))
        self.total.assign_add(ops.sum(membership * weights[:, None], axis=0))

    def result(self):
        nan = ops.convert_to_tensor(float("nan"), self.dtype)
        total = ops.sum(self.total)
        overall = ops.where(total > 0, ops.sum(self.correct) / ops.maximum(total, 1e-12), nan)
        seen = self.total > 0
        per_class = self.correct / ops.maximum(self.total, 1e-12)
        results = {self.name: ops.cast(overall, self.dtype)}
        for group, group_name in enumerate(self._group_names):
            members = ops.logical_and(seen, ops.convert_to_tensor(self._groups == group))
            size = ops.sum(ops.cast(members, "float32"))
            mean = ops.sum(ops.where(members, per_class, 0.0)) / ops.maximum(size, 1.0)
            results[f"{self.name}_{group_name}"] = ops.cast(ops.where(size > 0, mean, nan), self.dtype)
        return results

    def reset_state(self):
        self.correct.assign(ops.zeros_like(self.correct))
        self.total.assign(ops.zeros_like(self.total))

    def get_config(self):
        return {"class_counts": self.class_counts, "groups": self.groups, **super().get_config()}


# -- detection ---------------------------------------------------------------

def _import_pycocotools():
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as error:
        raise ImportError(
            "grouped_coco_ap needs pycocotools: pip install 'keras-eql[coco]'.") from error
    return COCO, COCOeval


def _load_json(value):
    if isinstance(value, str):
        with open(value) as handle:
            return json.load(handle)
    return value


def _coco_from_dataset(COCO, dataset):
    coco = COCO()
    coco.dataset = copy.deepcopy(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def images_per_category(annotations):
    """Number of distinct images in which each category appears.

    Args:
        annotations: a COCO-format dataset (dict or path to its JSON), usually
            the training set.

    Returns:
        `{category_id: image_count}` for every listed category (0 if unused).

    Example:
        >>> images_per_category({"categories": [{"id": 1}, {"id": 2}],
        ...     "annotations": [{"image_id": 7, "category_id": 1},
        ...                     {"image_id": 7, "category_id": 1}]})
        {1: 1, 2: 0}
    """
    dataset = _load_json(annotations)
    if not isinstance(dataset, dict) or "annotations" not in dataset:
        raise ValueError(
            "images_per_category: expected a COCO-format dict with 'annotations', "
            f"got {type(dataset).__name__}.")
    images = {category["id"]: set() for category in dataset.get("categories", [])}
    for annotation in dataset["annotations"]:
        images.setdefault(annotation["category_id"], set()).add(annotation["image_id"])
    return {category: len(ids) for category, ids in images.items()}


def _lvis_group(label, category, count):
    if isinstance(count, bool) or not isinstance(count, numbers.Real) or not count >= 0:
        raise ValueError(
            f"{label}: the training image count of category {category} must be "
            f"a non-negative number, got {count!r}.")
    return int(_threshold_groups(np.asarray([count]), above=100, below=11)[0])


def grouped_coco_ap(ground_truth, results, train_image_counts=None, iou_type="bbox",
                    max_detections_per_image=None):
    """COCO AP (IoU 0.50:0.95) overall and per LVIS frequency group.

    Runs pycocotools' standard (not LVIS-federated) evaluation, takes each
    category's AP from `COCOeval.eval["precision"]` (all areas, the largest
    `maxDets`) and averages the categories of each group: rare (at most 10
    training images), common (11-100), frequent (more than 100). Categories
    without ground truth in the evaluated set have no AP and are left out.

    Args:
        ground_truth: COCO-format evaluation set (dict or path to its JSON).
        results: COCO-format results (list of dicts or path to their JSON).
        train_image_counts: `{category_id: training images}`, e.g. from
            `images_per_category(train_set)`; `None` reads LVIS's
            `image_count` field of each ground-truth category.
        iou_type: `"bbox"` or `"segm"`.
        max_detections_per_image: LVIS's evaluation cap (300 on LVIS): keep
            only this many highest-scoring detections per image across all
            categories, so categories compete for the slots, and evaluate
            with `maxDets=[max_detections_per_image]`, under which
            pycocotools' own per-image-and-category cap cannot bind. `None`
            (default): pycocotools' standard 100 per image and category.

    Returns:
        `{"AP", "APr", "APc", "APf"}` floats in [0, 1]; NaN for a group with no
        evaluated category.

    Example:
        >>> gt = {"images": [{"id": 1, "width": 10, "height": 10}],
        ...       "categories": [{"id": 1, "name": "a", "image_count": 5}],
        ...       "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
        ...                        "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 0}]}
        >>> res = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 0.9}]
        >>> round(grouped_coco_ap(gt, res)["APr"], 6)
        1.0
    """
    label = "grouped_coco_ap"
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"{label}: iou_type must be 'bbox' or 'segm', got {iou_type!r}.")
    COCO, COCOeval = _import_pycocotools()
    dataset = _load_json(ground_truth)
    if not isinstance(dataset, dict) or not {"images", "annotations", "categories"} <= set(dataset):
        raise ValueError(
            f"{label}: ground_truth must be a COCO-format dict (or JSON path) with "
            f"'images', 'annotations' and 'categories', got {ground_truth!r:.200}.")
    detections = _load_json(results)
    if not isinstance(detections, list):
        raise ValueError(f"{label}: results must be a list of dicts (or a JSON path), got {results!r:.200}.")
    if max_detections_per_image is not None:
        if (isinstance(max_detections_per_image, bool) or not isinstance(max_detections_per_image, numbers.Integral)
                or max_detections_per_image < 1):
            raise ValueError(
                f"{label}: max_detections_per_image must be a positive integer or None, "
                f"got {max_detections_per_image!r}.")
        by_image = {}
        for detection in detections:
            by_image.setdefault(detection["image_id"], []).append(detection)
        # Highest scores first; a stable sort keeps the given order among ties.
        detections = [kept for image_detections in by_image.values()
                      for kept in sorted(image_detections, key=lambda d: -d["score"])[:max_detections_per_image]]
    category_ids = sorted(category["id"] for category in dataset["categories"])
    if train_image_counts is None:
        missing = [c["id"] for c in dataset["categories"] if "image_count" not in c]
        if missing:
            raise ValueError(
                f"{label}: categories {missing[:10]} have no 'image_count'; pass "
                "`train_image_counts` (see `images_per_category`).")
        train_image_counts = {c["id"]: c["image_count"] for c in dataset["categories"]}
    missing = [c for c in category_ids if c not in train_image_counts]
    if missing:
        raise ValueError(f"{label}: train_image_counts has no entry for categories {missing[:10]}.")
    groups = np.asarray([_lvis_group(label, c, train_image_counts[c]) for c in category_ids])

    truth = _coco_from_dataset(COCO, dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        if detections:
            # loadRes writes ids and areas into the dicts it is given.
            predicted = truth.loadRes(copy.deepcopy(detections))
        else:
            predicted = _coco_from_dataset(COCO, {
                "images": dataset["images"], "categories": dataset["categories"],
                "annotations": []})
        evaluation = COCOeval(truth, predicted, iou_type)
        evaluation.params.catIds = category_ids
        # Only the "all" area range is read below; the other three would
        # quadruple evaluateImg's calls (most of the time with 1203 categories).
        evaluation.params.areaRng, evaluation.params.areaRngLbl = evaluation.params.areaRng[:1], ["all"]
        if max_detections_per_image is not None:
            evaluation.params.maxDets = [int(max_detections_per_image)]
        evaluation.evaluate()
        evaluation.accumulate()
    # precision: [iou thresholds, recall points, categories, areas, maxDets].
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    valid = precision > -1
    evaluated = valid.any(axis=(0, 1))
    per_category = np.where(evaluated, np.where(valid, precision, 0).sum(axis=(0, 1))
                            / np.maximum(valid.sum(axis=(0, 1)), 1), np.nan)

    def mean_over(selection):
        selection = selection & evaluated
        return float(per_category[selection].mean()) if selection.any() else float("nan")

    summary = {"AP": mean_over(np.ones_like(evaluated))}
    for group, key in ((2, "APr"), (1, "APc"), (0, "APf")):
        summary[key] = mean_over(groups == group)
    return summary
