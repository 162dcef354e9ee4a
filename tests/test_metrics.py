"""Frequency groups, GroupedAccuracy against NumPy, grouped COCO AP against pycocotools."""

import contextlib
import doctest
import io
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_eql.data import head_medium_tail  # noqa: E402
from keras_eql.metrics import (  # noqa: E402
    GroupedAccuracy,
    class_groups,
    frequency_groups,
    grouped_coco_ap,
    images_per_category,
    lvis_groups,
    rank_groups,
)


# -- groups --------------------------------------------------------------------

CIFAR10_LT = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


@pytest.mark.parametrize("counts, expected", [
    ([101, 100, 20, 19, 0], [0, 1, 1, 2, 2]),   # threshold edges
    (CIFAR10_LT, [0] * 8 + [1, 1]),             # 8 / 2 / 0: "few" stays empty, never thirds
    ([10, 30, 10, 20], [2, 1, 2, 1]),            # no many-shot class
])
def test_frequency_groups_are_the_oltr_thresholds_only(counts, expected):
    assert frequency_groups(counts).tolist() == expected


def test_lvis_groups_edges():
    assert lvis_groups([101, 100, 11, 10, 1, 0]).tolist() == [0, 1, 1, 2, 2, 2]


@pytest.mark.parametrize("groups, kwargs, expected", [
    ("thirds", dict(class_counts=CIFAR10_LT), {"head": [0, 1, 2, 3], "medium": [4, 5, 6], "tail": [7, 8, 9]}),
    ("thirds", dict(num_classes=4, rank_by=[1.0, 9.0, 5.0, 0.0]), {"head": [1, 2], "medium": [0], "tail": [3]}),
    ("shots", dict(class_counts=CIFAR10_LT), {"many": list(range(8)), "medium": [8, 9], "few": []}),
    ("lvis", dict(class_counts=[500, 50, 5]), {"frequent": [0], "common": [1], "rare": [2]}),
    ({"tail": [2], "head": [0]}, dict(num_classes=3), {"tail": [2], "head": [0]}),
    (["r", "f", "c", "f"], dict(), {"f": [1, 3], "c": [2], "r": [0]}),       # LVIS's letters, frequent first
    (["tail", "head", "medium"], dict(), {"head": [1], "medium": [2], "tail": [0]}),
    (["b", "a", "b"], dict(), {"b": [0, 2], "a": [1]}),                     # unknown names: as met
])
def test_class_groups(groups, kwargs, expected):
    assert class_groups(groups, **kwargs) == expected


def test_the_demo_thirds_are_class_groups_thirds():
    assert class_groups("thirds", CIFAR10_LT) == head_medium_tail(CIFAR10_LT)


@pytest.mark.parametrize("groups, kwargs, fragment", [
    ("shots", dict(num_classes=3), "needs class_counts"),
    ("thirds", dict(num_classes=3), "needs class_counts"),
    ("quartiles", dict(num_classes=3), "unknown groups 'quartiles'"),
    ({"a": [0, 1], "b": [1]}, dict(num_classes=3), "class 1 is in groups 'a' and 'b'"),
    ({"a": [3]}, dict(num_classes=3), "lists 3"),
    (["a", "b"], dict(num_classes=3), "2 labels for 3 classes"),
    (7, dict(num_classes=3), "got 7"),
])
def test_class_groups_bad_inputs(groups, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        class_groups(groups, **kwargs)


def test_rank_groups_sizes_differ_by_at_most_one():
    for size in range(3, 12):
        sizes = np.bincount(rank_groups(np.arange(size)), minlength=3)
        assert sizes.max() - sizes.min() <= 1 and sizes.sum() == size


@pytest.mark.parametrize("counts, fragment", [
    ([1, -2, 3], "-2"), ([1, np.nan], "nan"), ([[1, 2]], "shape"), ("abc", "abc"), ([], "shape")])
def test_bad_counts_raise(counts, fragment):
    with pytest.raises(ValueError, match=fragment):
        frequency_groups(counts)


# -- GroupedAccuracy -----------------------------------------------------------

def numpy_grouped_accuracy(labels, scores, weights, groups):
    """OLTR shot_acc with weights: mean per-class accuracy in each group."""
    predicted = scores.argmax(-1)
    overall = np.sum(weights * (predicted == labels)) / np.sum(weights)
    result = {"overall": overall}
    for group, name in enumerate(["many", "medium", "few"]):
        accuracies = []
        for label in np.flatnonzero(groups == group):
            rows = labels == label
            if weights[rows].sum() > 0:
                accuracies.append(np.sum(weights[rows] * (predicted[rows] == label)) / weights[rows].sum())
        result[name] = np.mean(accuracies) if accuracies else np.nan
    return result


def test_grouped_accuracy_equals_numpy_on_random_data():
    rng = np.random.default_rng(0)
    counts = np.array([900, 400, 150, 101, 100, 60, 20, 19, 5, 1])
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    metric = GroupedAccuracy(counts)
    labels, scores, weights = [], [], []
    for _ in range(3):  # state accumulates over batches
        batch_labels = rng.integers(0, 10, size=50)
        batch_scores = rng.normal(size=(50, 10)).astype("float32")
        batch_scores[np.arange(50), batch_labels] += rng.normal(1.0, 1.0, size=50)  # some hits
        batch_weights = rng.uniform(0.1, 2.0, size=50)
        metric.update_state(batch_labels, batch_scores, sample_weight=batch_weights)
        labels.append(batch_labels), scores.append(batch_scores), weights.append(batch_weights)
    expected = numpy_grouped_accuracy(
        np.concatenate(labels), np.concatenate(scores), np.concatenate(weights), groups)
    result = {key: float(value) for key, value in metric.result().items()}
    assert set(result) == {
        "grouped_accuracy", "grouped_accuracy_many", "grouped_accuracy_medium", "grouped_accuracy_few"}
    np.testing.assert_allclose(
        [result["grouped_accuracy"], result["grouped_accuracy_many"],
         result["grouped_accuracy_medium"], result["grouped_accuracy_few"]],
        [expected["overall"], expected["many"], expected["medium"], expected["few"]], rtol=1e-5)
    assert len({round(v, 4) for v in result.values()}) == 4  # the groups really differ
    metric.reset_state()
    assert np.isnan(float(metric.result()["grouped_accuracy"]))


def test_one_hot_labels_ignored_labels_and_empty_groups():
    scores = np.eye(3, dtype="float32")[[0, 1, 1, 2]]
    sparse, one_hot = GroupedAccuracy([500, 50, 5]), GroupedAccuracy([500, 50, 5])
    sparse.update_state(np.array([[0], [1], [2], [-1]]), scores)  # -1 is skipped
    one_hot.update_state(np.eye(3)[[0, 1, 2]], scores[:3])
    for metric in (sparse, one_hot):
        result = {key: float(value) for key, value in metric.result().items()}
        assert result["grouped_accuracy"] == pytest.approx(2 / 3)
        assert (result["grouped_accuracy_many"], result["grouped_accuracy_few"]) == (1.0, 0.0)
    only_head = GroupedAccuracy([500, 50, 5])
    only_head.update_state(np.array([0, 0]), scores[:2])
    assert np.isnan(float(only_head.result()["grouped_accuracy_few"]))


def test_grouped_accuracy_in_a_jit_compiled_model_and_serialization():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(40, 4)).astype("float32")
    labels = rng.integers(0, 3, size=40)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile("sgd", "sparse_categorical_crossentropy",
                  metrics=[GroupedAccuracy([500, 50, 5], name="ga")], jit_compile=True)
    results = model.evaluate(features, labels, batch_size=8, verbose=0, return_dict=True)
    expected = numpy_grouped_accuracy(labels, model.predict(features, verbose=0), np.ones(40), np.arange(3))
    np.testing.assert_allclose(
        [results["ga"], results["ga_many"], results["ga_medium"], results["ga_few"]],
        [expected["overall"], expected["many"], expected["medium"], expected["few"]], rtol=1e-5)
    clone = keras.metrics.deserialize(keras.metrics.serialize(GroupedAccuracy([500, 50, 5], name="ga")))
    assert isinstance(clone, GroupedAccuracy) and clone.class_counts == [500, 50, 5] and clone.name == "ga"


def test_grouped_accuracy_names_each_group_by_its_one_rule():
    # CIFAR-10-LT has no few-shot class: "few" is NaN, not relabelled thirds.
    metric = GroupedAccuracy(CIFAR10_LT)
    labels = np.arange(10)
    metric.update_state(labels, np.eye(10, dtype="float32"))
    result = {key: float(value) for key, value in metric.result().items()}
    assert result["grouped_accuracy_many"] == 1.0 and np.isnan(result["grouped_accuracy_few"])
    thirds = GroupedAccuracy(CIFAR10_LT, groups="thirds", name="acc")
    scores = np.eye(10, dtype="float32")[[0, 1, 2, 3, 4, 5, 6, 0, 0, 9]]  # 2 of 3 tail classes wrong
    thirds.update_state(labels, scores)
    result = {key: float(value) for key, value in thirds.result().items()}
    assert set(result) == {"acc", "acc_head", "acc_medium", "acc_tail"}
    assert (result["acc_head"], result["acc_medium"], result["acc_tail"]) == (1.0, 1.0, pytest.approx(1 / 3))
    lvis = GroupedAccuracy([500, 50, 5], groups=["f", "c", "r"], name="ap")
    assert sorted(lvis.result()) == ["ap", "ap_c", "ap_f", "ap_r"]
    clone = keras.metrics.deserialize(keras.metrics.serialize(thirds))
    assert clone.groups == "thirds" and sorted(clone.result()) == sorted(result)
    clone = keras.metrics.deserialize(keras.metrics.serialize(lvis))
    assert clone.groups == {"f": [0], "c": [1], "r": [2]}


def test_grouped_accuracy_bad_inputs():
    with pytest.raises(ValueError, match="at least 2"):
        GroupedAccuracy([10])
    with pytest.raises(ValueError, match="4 columns"):
        GroupedAccuracy([500, 50, 5]).update_state(np.array([0]), np.zeros((1, 4)))


# -- grouped COCO AP -----------------------------------------------------------

TRAIN_IMAGE_COUNTS = {1: 500, 2: 101, 3: 60, 4: 10, 5: 3}  # f, f, c, r, r


def box(annotation_id, image_id, category_id, x, y, w, h):
    return {"id": annotation_id, "image_id": image_id, "category_id": category_id,
            "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0}


def tiny_coco():
    """Four images, five categories; results with hits, misses, duplicates and false positives."""
    images = [{"id": i, "width": 100, "height": 100} for i in range(1, 5)]
    categories = [{"id": c, "name": f"c{c}"} for c in TRAIN_IMAGE_COUNTS]
    truth = [box(1, 1, 1, 10, 10, 30, 30), box(2, 1, 2, 50, 50, 20, 20), box(3, 2, 1, 5, 5, 40, 40),
             box(4, 2, 3, 60, 10, 25, 25), box(5, 3, 4, 20, 20, 30, 30), box(6, 3, 5, 0, 60, 30, 30),
             box(7, 4, 2, 30, 30, 30, 30), box(8, 4, 5, 70, 70, 20, 20)]
    results = [
        {"image_id": 1, "category_id": 1, "bbox": [11, 10, 30, 30], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [60, 60, 20, 20], "score": 0.95},  # false positive
        {"image_id": 2, "category_id": 1, "bbox": [8, 8, 40, 40], "score": 0.6},     # looser hit
        {"image_id": 1, "category_id": 2, "bbox": [52, 50, 20, 22], "score": 0.8},
        {"image_id": 4, "category_id": 2, "bbox": [45, 45, 30, 30], "score": 0.7},   # poor overlap
        {"image_id": 2, "category_id": 3, "bbox": [60, 10, 25, 25], "score": 0.5},
        {"image_id": 3, "category_id": 4, "bbox": [0, 0, 20, 20], "score": 0.9},     # miss
        {"image_id": 3, "category_id": 5, "bbox": [2, 62, 28, 28], "score": 0.4},
        {"image_id": 4, "category_id": 5, "bbox": [70, 70, 20, 20], "score": 0.3},
    ]
    return {"images": images, "categories": categories, "annotations": truth}, results


def pycocotools_category_ap(truth, results, category_id):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = json.loads(json.dumps(truth))
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(json.loads(json.dumps(results))), "bbox")
        evaluation.params.catIds = [category_id]
        evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
    return evaluation.stats[0]


def test_grouped_ap_equals_pycocotools_per_category_ap_averaged_by_hand():
    truth, results = tiny_coco()
    per_category = {c: pycocotools_category_ap(truth, results, c) for c in TRAIN_IMAGE_COUNTS}
    expected = {
        "AP": np.mean(list(per_category.values())),
        "APf": np.mean([per_category[1], per_category[2]]),
        "APc": per_category[3],
        "APr": np.mean([per_category[4], per_category[5]]),
    }
    summary = grouped_coco_ap(truth, results, train_image_counts=TRAIN_IMAGE_COUNTS)
    assert summary.keys() == expected.keys()
    for key in expected:
        assert summary[key] == pytest.approx(expected[key], abs=1e-12), key
    assert len({round(v, 6) for v in summary.values()}) == 4  # a discriminating set


def test_grouped_ap_reads_lvis_image_counts_and_json_files(tmp_path):
    truth, results = tiny_coco()
    for category in truth["categories"]:
        category["image_count"] = TRAIN_IMAGE_COUNTS[category["id"]]
    (tmp_path / "gt.json").write_text(json.dumps(truth))
    (tmp_path / "res.json").write_text(json.dumps(results))
    from_files = grouped_coco_ap(str(tmp_path / "gt.json"), str(tmp_path / "res.json"))
    assert from_files == grouped_coco_ap(truth, results, train_image_counts=TRAIN_IMAGE_COUNTS)
    assert results[0].keys() == {"image_id", "category_id", "bbox", "score"}  # inputs untouched


def test_grouped_ap_of_no_detections_is_zero_and_empty_groups_are_nan():
    truth, _ = tiny_coco()
    assert grouped_coco_ap(truth, [], train_image_counts=TRAIN_IMAGE_COUNTS) == {
        "AP": 0.0, "APr": 0.0, "APc": 0.0, "APf": 0.0}
    all_frequent = {c: 1000 for c in TRAIN_IMAGE_COUNTS}
    summary = grouped_coco_ap(truth, [], train_image_counts=all_frequent)
    assert np.isnan(summary["APr"]) and np.isnan(summary["APc"]) and summary["APf"] == 0.0


def test_images_per_category_counts_distinct_images():
    truth, _ = tiny_coco()
    assert images_per_category(truth) == {1: 2, 2: 2, 3: 1, 4: 1, 5: 2}


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(train_image_counts=None), "image_count"),
    (dict(train_image_counts={1: 5}), r"\[2, 3, 4, 5\]"),
    (dict(train_image_counts={**TRAIN_IMAGE_COUNTS, 3: -1}), "-1"),
    (dict(train_image_counts=TRAIN_IMAGE_COUNTS, iou_type="keypoints"), "keypoints"),
])
def test_grouped_ap_bad_inputs(kwargs, fragment):
    truth, results = tiny_coco()
    with pytest.raises(ValueError, match=fragment):
        grouped_coco_ap(truth, results, **kwargs)
    with pytest.raises(ValueError, match="results must be a list"):
        grouped_coco_ap(truth, {"not": "a list"}, train_image_counts=TRAIN_IMAGE_COUNTS)


def test_docstring_examples_run():
    import keras_eql.metrics as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
