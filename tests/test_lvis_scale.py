"""The LVIS-scale benchmark: its data, the LVIS-style detection cap and a smoke run of every method."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from keras_eql.metrics import grouped_coco_ap, images_per_category

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

import _lvis_data  # noqa: E402


@pytest.fixture(scope="module")
def structure():
    return _lvis_data.category_templates()


def test_lvis_counts_and_groups_are_lvis_v1s():
    counts = _lvis_data.lvis_image_counts()
    assert counts.shape == (1203,) and counts.sum() == 360952 and counts.max() == 1977
    groups = _lvis_data.lvis_groups(counts)
    assert [len(groups[g]) for g in ("rare", "common", "frequent")] == [337, 461, 405]
    scaled = _lvis_data.scaled_counts(counts, 40)
    assert scaled.tolist() == [max(1, round(c / 40)) for c in counts.tolist()]
    # Groups come from the unscaled counts: every rare category is also at 1 image after scaling.
    assert set(np.flatnonzero(scaled == 1)) >= set(groups["rare"])


def test_split_realises_the_scaled_counts_exactly(structure):
    counts = _lvis_data.scaled_counts(_lvis_data.lvis_image_counts(), 400)
    split = _lvis_data.detection_split(counts, 0, structure)
    per_category = images_per_category(split["coco"])
    assert [per_category[k + 1] for k in range(1203)] == counts.tolist()
    # Once per image: as many annotations as images per category.
    assert len(split["coco"]["annotations"]) == counts.sum()
    objects = (split["labels"] >= 0).sum(axis=1)
    assert objects.max() <= _lvis_data.GRID ** 2 and objects.min() >= objects.max() - 1
    boxes = split["boxes"][split["labels"] >= 0]
    assert np.all(boxes[:, 2:] > boxes[:, :2]) and boxes.min() >= 0 and boxes.max() <= _lvis_data.IMAGE_SIZE


def test_data_is_deterministic_per_seed(structure):
    counts = np.zeros(1203, np.int64)
    counts[:40] = 3
    first, again, other = (_lvis_data.detection_split(counts, seed, structure) for seed in (5, 5, 6))
    np.testing.assert_array_equal(first["images"], again["images"])
    np.testing.assert_array_equal(first["boxes"], again["boxes"])
    assert first["coco"] == again["coco"]
    assert not np.array_equal(first["images"], other["images"])
    np.testing.assert_array_equal(structure["templates"], _lvis_data.category_templates()["templates"])


def test_families_share_features_by_a_measured_margin(structure):
    family, templates = structure["family"], structure["templates"]
    assert len(np.unique(family)) == _lvis_data.NUM_BASES and np.bincount(family).min() >= 2
    similarity = _lvis_data.family_similarity(templates, family)
    # Measured: 0.79 within, -0.01 across (centred cosine of the category templates).
    assert similarity["within"] > 0.6 and similarity["across"] < 0.1
    assert similarity["within"] - similarity["across"] > 0.5
    # Still every category is its own: no two templates coincide.
    vectors = templates.reshape(1203, -1)
    vectors = vectors - vectors.mean(0)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = vectors @ vectors.T
    np.fill_diagonal(cosine, -1)
    assert cosine.max() < 0.995


def _box(i):
    return [10.0 * i, 0.0, 8.0, 8.0]


def test_lvis_cap_keeps_300_detections_per_image_across_categories():
    """A rare category's one true detection, outranked by 300 detections of other categories."""
    categories = [{"id": 1, "name": "rare"}, {"id": 2, "name": "frequent"}]
    ground_truth = {"images": [{"id": 1, "width": 4000, "height": 10}], "categories": categories,
                    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": _box(0), "area": 64,
                                     "iscrowd": 0},
                                    {"id": 2, "image_id": 1, "category_id": 2, "bbox": _box(1), "area": 64,
                                     "iscrowd": 0}]}
    counts = {1: 3, 2: 500}
    others = [{"image_id": 1, "category_id": 2, "bbox": _box(2 + i), "score": 0.9 - i * 1e-4} for i in range(299)]
    others.append({"image_id": 1, "category_id": 2, "bbox": _box(1), "score": 0.95})
    rare_hit = {"image_id": 1, "category_id": 1, "bbox": _box(0), "score": 0.5}
    results = others + [rare_hit]
    uncapped = grouped_coco_ap(ground_truth, results, train_image_counts=counts)
    capped = grouped_coco_ap(ground_truth, results, train_image_counts=counts, max_detections_per_image=300)
    roomier = grouped_coco_ap(ground_truth, results, train_image_counts=counts, max_detections_per_image=301)
    assert uncapped["APr"] == pytest.approx(1.0) and roomier["APr"] == pytest.approx(1.0)
    assert capped["APr"] == 0.0  # the 300 slots went to the frequent category
    assert capped["APf"] == pytest.approx(1.0)


def test_lvis_cap_lifts_pycocotools_per_category_cap():
    """pycocotools keeps 100 detections per image and category; the LVIS cap is per image only."""
    categories = [{"id": 1, "name": "a"}]
    ground_truth = {"images": [{"id": 1, "width": 4000, "height": 10}], "categories": categories,
                    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": _box(0), "area": 64,
                                     "iscrowd": 0}]}
    # 149 false positives outrank the true one (rank 150).
    results = [{"image_id": 1, "category_id": 1, "bbox": _box(1 + i), "score": 0.9 - i * 1e-3} for i in range(149)]
    results.append({"image_id": 1, "category_id": 1, "bbox": _box(0), "score": 0.5})
    counts = {1: 3}
    assert grouped_coco_ap(ground_truth, results, train_image_counts=counts)["AP"] == 0.0
    lvis = grouped_coco_ap(ground_truth, results, train_image_counts=counts, max_detections_per_image=300)
    assert lvis["AP"] > 0.0


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "300"])
def test_lvis_cap_rejects_bad_values(value):
    with pytest.raises(ValueError, match="max_detections_per_image"):
        grouped_coco_ap({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}, [],
                        train_image_counts={1: 1}, max_detections_per_image=value)


def test_ablation_methods_switch_what_the_paper_ablates():
    import lvis_scale

    def config(method):
        return lvis_scale.dense_keras_eql_loss(method, scale_factor=8.0).get_config()

    assert {k: config("efl")[k] for k in ("scale", "focusing_factor", "weighting_factor")} == {
        "scale": 8.0, "focusing_factor": True, "weighting_factor": True}
    assert (config("efl_focusing")["focusing_factor"], config("efl_focusing")["weighting_factor"]) == (True, False)
    assert (config("efl_weighting")["focusing_factor"], config("efl_weighting")["weighting_factor"]) == (False, True)
    assert [config(m)["scale"] for m in ("focal", "efl_s2", "efl_s4", "efl_s12")] == [0.0, 2.0, 4.0, 12.0]
    fl_eql = lvis_scale.dense_keras_eql_loss("fl_eql", scale_factor=8.0)
    assert type(fl_eql).__name__ == "FocalSigmoidEQL" and fl_eql.normalize_by_positives
    negatives_only = lvis_scale.two_stage_loss("sigmoid_eql_neg", lvis_counts=None)[0].get_config()
    assert (negatives_only["objectness"], negatives_only["reweight_negatives"],
            negatives_only["reweight_positives"]) == (True, True, False)
    # The ablations stay out of a run without --methods, and out of the main tables.
    assert set(lvis_scale.ABLATIONS).isdisjoint(lvis_scale.parse_args([]).methods)
    assert set(lvis_scale.ABLATIONS) <= set(lvis_scale.METHODS)


def test_dense_defaults_are_the_setting_that_learns():
    import lvis_scale

    # The README table's dense rows come from these defaults (BENCHMARKS.md):
    # crop pre-training, then 3 epochs at 1e-2; task (a) keeps 1e-3.
    args = lvis_scale.parse_args([])
    assert (args.pretrain_epochs, args.dense_learning_rate, args.epochs) == (5, 1e-2, 3)
    assert args.learning_rate == 1e-3
    assert lvis_scale.parse_args(["--smoke"]).pretrain_epochs == 0
    assert lvis_scale.parse_args(["--smoke", "--pretrain-epochs", "1"]).pretrain_epochs == 1


def test_smoke_trains_every_method_and_moves_the_statistics(tmp_path):
    import lvis_scale

    output = tmp_path / "smoke.json"
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "lvis_scale.py"), "--smoke", "--verbose", "0", "--no-jit-compile",
         "--methods", ",".join(lvis_scale.METHODS), "--output", str(output)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    report = json.loads(output.read_text())
    assert list(report["results"]) == list(lvis_scale.METHODS)
    assert report["data"]["font"].endswith("DejaVuSans.ttf")
    for method, row in report["results"].items():
        for key in ("AP", "AP_r", "AP_c", "AP_f"):
            assert row[key] is None or 0.0 <= row[key] <= 1.0, (method, key)
        if method in ("eqlv1", "seesaw"):
            assert "positive" not in row  # no gradient statistics
            continue
        assert row["statistics_steps"] == 3.0, method
        positive, negative = np.array(row["positive"]), np.array(row["negative"])
        assert positive.shape == negative.shape == (1203,)
        # Every category appears once in the smoke data; three steps see some of them.
        assert positive.sum() > 0 and negative.sum() > 0 and np.all(negative > 0), method
        assert len(row["history"]["steps"]) >= 1


def test_dense_diagnosis_smoke_measures_boxes_and_classes():
    import lvis_dense_diagnosis

    result = lvis_dense_diagnosis.main(["--smoke", "--methods", "focal", "--verbose", "0", "--pretrain-epochs", "1",
                                        "--no-jit-compile"])
    assert set(result) == {"box_iou", "top1", "family_top1", "median_true_score", "median_score"}
    assert 0.0 < result["box_iou"] <= 1.0
    assert 0.0 <= result["top1"] <= result["family_top1"] <= 1.0
    assert 0.0 < result["median_true_score"] < 1.0 and 0.0 < result["median_score"] < 1.0
