"""Every example runs in `--smoke` mode; shared example code behaves; bad flags fail clearly."""

import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
REAL_FILES = os.path.isfile("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
sys.path.insert(0, str(EXAMPLES))


def run_example(name, tmp_path, *flags, timeout=420):
    """Run `examples/<name>.py --smoke` in a subprocess; returns (process, results JSON)."""
    output = tmp_path / f"{name}.json"
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--smoke", "--verbose", "0", "--output", str(output), *flags],
        capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    return completed, json.loads(output.read_text())


def assert_fractions(row, keys):
    for key in keys:
        value = row[key]
        assert value is None or 0.0 <= value <= 1.0, (key, value)  # None: an empty group (JSON null)


def test_classification_lt_smoke_on_real_fashion_mnist(tmp_path):
    completed, report = run_example("classification_lt", tmp_path,
                                    "--methods", "cross_entropy,softmax_eql", "--imbalance-factor", "50")
    if REAL_FILES:
        assert report["data_source"] == "idx:/usr/share/datasets/fashion-mnist"
    assert report["class_counts"][0] / report["class_counts"][-1] == pytest.approx(50, rel=0.02)
    for name in ("cross_entropy", "softmax_eql"):
        assert_fractions(report["results"][name], ("overall", "head", "medium", "tail"))
    assert report["results"]["softmax_eql"]["statistics_steps"] == 512 // 64  # one epoch of the smoke subset


def test_detection_lt_smoke(tmp_path):
    _, report = run_example("detection_lt", tmp_path)
    assert set(report["results"]) == {"focal", "efl", "qfl", "eqfl"}
    for method, row in report["results"].items():
        assert_fractions(row, ("AP", "APr", "APc", "APf"))
    steps = len(report["train_image_counts"]) and report["results"]["efl"]["statistics_steps"]
    assert steps >= 1 and report["results"]["eqfl"]["statistics_steps"] == steps
    assert len(report["results"]["efl"]["ratio"]) == 36


def test_two_stage_lt_smoke(tmp_path):
    _, report = run_example("two_stage_lt", tmp_path)
    assert set(report["results"]) == {"bce", "sigmoid_eql"}
    for row in report["results"].values():
        assert_fractions(row, ("mAP", "AP_r", "AP_c", "AP_f", "acc", "acc_r", "acc_c", "acc_f"))
    eql = report["results"]["sigmoid_eql"]
    assert eql["statistics_steps"] >= 1
    assert any(ratio != 100.0 for ratio in eql["ratio"])  # 100 is the untouched initial ratio


def test_segmentation_lt_smoke(tmp_path):
    _, report = run_example("segmentation_lt", tmp_path)
    assert set(report["results"]) == {"ce", "softmax_eql", "bce", "sigmoid_eql"}
    for row in report["results"].values():
        assert_fractions(row, ("mIoU", "mIoU_r", "mIoU_c", "mIoU_f", "mAcc", "mAcc_r", "mAcc_c", "mAcc_f"))
    for method in ("softmax_eql", "sigmoid_eql"):
        assert report["results"][method]["statistics_steps"] >= 1
        assert sum(report["results"][method]["positive"]) > 0


def test_kerashub_retinanet_trains_with_efl_and_moves_its_statistics(tmp_path):
    pytest.importorskip("keras_hub", reason="keras-hub is not installed (pip install keras-hub)")
    completed, report = run_example("kerashub_retinanet", tmp_path)
    efl = report["results"]["efl"]
    # Smoke: 0.02 x the training set, batches of 8, one epoch, the partial batch dropped.
    assert efl["statistics_steps"] >= 1
    assert sum(efl["positive"]) > 0
    assert any(not math.isclose(ratio, 1.0) for ratio in efl["ratio"])  # 1 is the initial EFL ratio
    assert_fractions(efl, ("AP", "APr"))


def test_multiworker_ctl_smoke_gathers_both_workers_in_output(tmp_path):
    output = tmp_path / "multiworker.json"
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "multiworker_ctl.py"), "--smoke", "--output", str(output)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-2000:]
    report = json.loads(output.read_text())
    assert report["args"]["smoke"] is True and set(report["results"]) == {"worker0", "worker1"}
    first, second = report["results"]["worker0"], report["results"]["worker1"]
    for name, values in first["losses"].items():
        assert values["steps"] == 2.0, name  # the smoke run's two steps, each counted once
        assert values["positive"] == second["losses"][name]["positive"], name  # all-reduced


EXAMPLE_NAMES = ["classification_lt", "detection_lt", "two_stage_lt", "segmentation_lt", "kerashub_retinanet"]


@pytest.mark.parametrize("module", EXAMPLE_NAMES)
def test_results_go_to_a_folder_git_ignores_by_default(module):
    args = __import__(module).parse_args([])
    repository = EXAMPLES.parent
    assert pathlib.Path(args.output) == repository / "outputs" / f"{module}.json"
    assert "/outputs/" in (repository / ".gitignore").read_text().split()
    assert __import__(module).parse_args(["--smoke", "--output", "x.json"]).output == "x.json"
    example = __import__("multiworker_ctl")
    assert pathlib.Path(example.DEFAULT_OUTPUT) == repository / "outputs" / "multiworker_ctl.json"


def test_classification_lt_takes_methods_and_the_deprecated_losses(capsys):
    parse_args = __import__("classification_lt").parse_args
    assert parse_args(["--methods", "softmax_eql,seesaw"]).methods == ["softmax_eql", "seesaw"]
    assert "deprecated" not in capsys.readouterr().err
    assert parse_args(["--losses", "softmax_eql"]).methods == ["softmax_eql"]
    assert "--losses is deprecated; use --methods" in capsys.readouterr().err


@pytest.mark.parametrize("strategy, message", [
    ("multiworker", "keras-team/keras#20585"),
    ("tpu", "no TPU found"),
])
def test_unavailable_strategies_fail_with_a_pointer(strategy, message, tmp_path):
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "two_stage_lt.py"), "--smoke", "--strategy", strategy],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert completed.returncode != 0
    assert message in completed.stderr


@pytest.mark.parametrize("module, argv, fragment", [
    ("detection_lt", ["--methods", "efl,ghm"], "unknown method(s) ['ghm']"),
    ("detection_lt", ["--epochs", "0"], "argument --epochs: must be a positive integer, got '0'"),
    ("segmentation_lt", ["--strategy", "gpu"], "argument --strategy: invalid choice: 'gpu'"),
    ("two_stage_lt", ["--scale", "-2"], "argument --scale: must be a positive number, got '-2'"),
    ("classification_lt", ["--imbalance-factor", "0.1"], "must be a finite number >= 1, got '0.1'"),
    ("kerashub_retinanet", ["--methods", "qfl"], "unknown method(s) ['qfl']"),
])
def test_bad_flags_name_the_offending_value(module, argv, fragment, capsys):
    parse_args = __import__(module).parse_args
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert fragment in capsys.readouterr().err


# -- shared example code ----------------------------------------------------------
def test_zipf_counts_give_lvis_like_groups():
    import _common
    import _synthetic

    counts = _synthetic.zipf_image_counts()
    groups = _common.lvis_groups(counts)
    assert _synthetic.NUM_CATEGORIES >= 30 and np.all(np.diff(counts) <= 0)
    assert [len(groups[g]) for g in ("frequent", "common", "rare")] == [6, 17, 13]


def test_detection_split_matches_its_coco_ground_truth():
    import _synthetic

    split = _synthetic.detection_split([3, 2, 1], seed=0)
    annotations = split["coco"]["annotations"]
    assert len(annotations) == 6 and sorted(a["category_id"] for a in annotations) == [1, 1, 1, 2, 2, 3]
    first = annotations[0]
    x0, y0, x1, y1 = split["boxes"][first["image_id"] - 1, 0]
    assert first["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0])
    # Each object's visible mask lies inside its box.
    masks, boxes, labels = split["masks"], split["boxes"], split["labels"]
    for image, slot in zip(*np.nonzero(labels >= 0)):
        ys, xs = np.nonzero(masks[image, slot])
        if len(ys):
            assert xs.min() >= boxes[image, slot, 0] and xs.max() < boxes[image, slot, 2]


def test_centre_sampling_assigns_locations_near_the_box_centre():
    import _detection

    boxes = np.array([[[20.0, 20.0, 40.0, 40.0], [0, 0, 0, 0]]], np.float32)
    labels = np.array([[7, -1]], np.int32)
    location_labels, location_boxes = _detection.assign_targets(boxes, labels, 64, num_classes=36)
    centres = _detection.grid_centres(64)
    positive = location_labels[0] == 7
    assert set(np.unique(location_labels)) == {7, 36}
    assert np.all(np.abs(centres[positive] - 30.0) <= 1.5 * _detection.STRIDE)
    np.testing.assert_array_equal(location_boxes[0, positive], np.tile(boxes[0, 0], (positive.sum(), 1)))
    assert np.all(location_boxes[0, ~positive] == 0)


def test_data_parallel_is_refused_under_tensorflow_with_a_pointer():
    import _common

    with pytest.raises(SystemExit, match="--strategy data_parallel is keras.distribution.DataParallel, "
                                         "which Keras runs under KERAS_BACKEND=jax; under tensorflow "
                                         "use --strategy mirrored"):
        _common.resolve_strategy("data_parallel", True)


def test_numpy_nms_selects_what_tensorflow_selects():
    """`_detection.combined_nms` (the NMS off TensorFlow) against `tf.image.combined_non_max_suppression`."""
    import tensorflow as tf

    import _detection

    rng = np.random.default_rng(0)
    corners = rng.uniform(-0.1, 1.0, size=(3, 40, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(0.05, 0.4, size=(3, 40, 2))], -1).astype(np.float32)
    scores = rng.uniform(0, 1, size=(3, 40, 5)).astype(np.float32) ** 3
    options = dict(max_output_size_per_class=6, max_total_size=20, iou_threshold=0.5, score_threshold=0.05)
    expected = tf.image.combined_non_max_suppression(boxes[:, :, None, :], scores, clip_boxes=True, **options)
    got = _detection.combined_nms(boxes, scores, **options)
    np.testing.assert_array_equal(got[3], expected.valid_detections.numpy())
    np.testing.assert_allclose(got[1], expected.nmsed_scores.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(got[2], expected.nmsed_classes.numpy())
    np.testing.assert_allclose(got[0], expected.nmsed_boxes.numpy(), rtol=1e-6, atol=1e-7)
