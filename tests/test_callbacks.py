"""GradientStatisticsLogger: TensorBoard, CSV and `logs` against the loss's own statistics."""

import csv
import doctest
import os
import pathlib
import subprocess
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402

import keras_eql  # noqa: E402
from keras_eql.callbacks import CSV_COLUMNS, IMAGE_DPI, IMAGE_FIGSIZE, GradientStatisticsLogger  # noqa: E402
from keras_eql.metrics import GroupedAccuracy  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
NUM_CLASSES = 7
# By the documented thresholds (>100 head, 20-100 medium, <20 tail).
CLASS_COUNTS = [300, 200, 150, 50, 30, 5, 2]
EXPECTED_GROUPS = {"head": [0, 1, 2], "medium": [3, 4], "tail": [5, 6]}
ROWS, BATCH, EPOCHS, EVERY = 64, 8, 2, 3  # 8 steps per epoch


class StatisticsSnapshots(keras.callbacks.Callback):
    """Test oracle: the loss's statistics wherever the logger may log, by step."""

    def __init__(self, loss):
        super().__init__()
        self.loss, self.by_step = loss, {}

    def _snapshot(self):
        if self.loss.statistics is not None:
            step = int(self.model.optimizer.iterations.numpy())
            self.by_step[step] = self.loss.gradient_statistics()

    def on_train_batch_begin(self, batch, logs=None):
        self._snapshot()

    def on_epoch_end(self, epoch, logs=None):
        self._snapshot()


def tiny_model(loss, jit_compile=False, seed=0):
    # XLA compilation costs seconds per model: only the shared fit uses it.
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(NUM_CLASSES)])
    model.compile(keras.optimizers.SGD(0.1), loss=loss, jit_compile=jit_compile)
    return model


def tiny_data(seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice(NUM_CLASSES, size=ROWS, p=[0.3, 0.2, 0.15, 0.15, 0.1, 0.06, 0.04])
    return rng.normal(size=(ROWS, 6)).astype("float32"), labels.astype("int32")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One jit-compiled fit with every output on; shared by the tests below."""
    directory = tmp_path_factory.mktemp("logger")
    loss = keras_eql.SigmoidEQL()  # num_classes inferred: statistics built lazily
    model = tiny_model(loss, jit_compile=True)
    logger = GradientStatisticsLogger(
        log_dir=str(directory / "tb"), csv_path=str(directory / "stats.csv"),
        every_n_steps=EVERY, class_counts=CLASS_COUNTS)
    snapshots = StatisticsSnapshots(loss)
    features, labels = tiny_data()
    history = model.fit(features, labels, batch_size=BATCH, epochs=EPOCHS,
                        shuffle=False, verbose=0, callbacks=[logger, snapshots])
    steps_per_epoch = ROWS // BATCH
    epoch_ends = [steps_per_epoch * (epoch + 1) for epoch in range(EPOCHS)]
    logged = sorted(set(range(EVERY, epoch_ends[-1], EVERY)) | set(epoch_ends))
    return dict(directory=directory, loss=loss, model=model, history=history,
                snapshots=snapshots.by_step, epoch_ends=epoch_ends, logged=logged)


def read_tensors(log_dir):
    accumulator = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    return {tag: [(event.step, tf.make_ndarray(event.tensor_proto)) for event in accumulator.Tensors(tag)]
            for tag in accumulator.Tags()["tensors"]}


def group_means(ratio):
    return {name: float(np.mean(ratio[members])) for name, members in EXPECTED_GROUPS.items()}


def test_tensorboard_group_scalars_match_statistics_without_histograms(trained):
    # Next to Keras's TensorBoard callback's `train` run; no per-class histograms.
    tensors = read_tensors(trained["directory"] / "tb" / "train")
    expected_tags = {f"sigmoid_eql/ratio_mean/{g}" for g in EXPECTED_GROUPS}
    images = {f"sigmoid_eql/gradient_statistics/{panel}" for panel in ("positive", "negative", "ratio")}
    assert set(tensors) == expected_tags | images
    for group in EXPECTED_GROUPS:
        events = tensors[f"sigmoid_eql/ratio_mean/{group}"]
        assert [step for step, _ in events] == trained["logged"]
        for step, value in events:
            expected = group_means(trained["snapshots"][step]["ratio"])[group]
            np.testing.assert_allclose(value, expected, rtol=1e-6)
    final = trained["loss"].gradient_statistics()
    last_step = trained["epoch_ends"][-1]
    np.testing.assert_array_equal(trained["snapshots"][last_step]["ratio"], final["ratio"])


def test_tensorboard_images_are_the_plot_panels_at_card_size_at_epoch_ends(trained):
    from keras_eql.plotting import StatisticsFigure

    tensors = read_tensors(trained["directory"] / "tb" / "train")
    expected_size = (round(IMAGE_FIGSIZE[0] * IMAGE_DPI), round(IMAGE_FIGSIZE[1] * IMAGE_DPI))
    assert 1.4 <= expected_size[0] / expected_size[1] <= 1.7  # a TensorBoard card's shape
    for panel in ("positive", "negative", "ratio"):
        events = tensors[f"sigmoid_eql/gradient_statistics/{panel}"]
        assert [step for step, _ in events] == trained["epoch_ends"]
        width, height, png = events[-1][1]
        image = tf.io.decode_png(png).numpy()
        assert (int(width), int(height)) == expected_size and image.shape[:2] == expected_size[::-1]
        fresh = StatisticsFigure(figsize=IMAGE_FIGSIZE, dpi=IMAGE_DPI, panels=[panel])
        fresh.update(trained["loss"].gradient_statistics(), CLASS_COUNTS, title="",
                     class_names=[str(index) for index in range(NUM_CLASSES)], groups=EXPECTED_GROUPS)
        np.testing.assert_array_equal(image, fresh.rgba()[..., :3])  # the figure of the final statistics


@pytest.mark.parametrize("every, expected_epochs", [(2, [2, 4]), (None, [])])
def test_image_frequency_is_configurable(tmp_path, every, expected_epochs):
    loss = keras_eql.SigmoidEQL()
    logger = GradientStatisticsLogger(log_dir=str(tmp_path), image_every_n_epochs=every)
    features, labels = tiny_data()
    tiny_model(loss).fit(features, labels, batch_size=ROWS, epochs=4, verbose=0,
                         callbacks=[logger])
    tensors = read_tensors(tmp_path / "train")
    steps = [step for step, _ in tensors.get("sigmoid_eql/gradient_statistics/ratio", [])]
    assert steps == expected_epochs  # one step per epoch: step == epoch number
    assert [step for step, _ in tensors["sigmoid_eql/ratio_mean/tail"]] == [1, 2, 3, 4]


def test_csv_rows_match_statistics(trained):
    with open(trained["directory"] / "stats.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == NUM_CLASSES * len(trained["logged"])
    assert sorted({int(row["step"]) for row in rows}) == trained["logged"]
    group_of = {index: name for name, members in EXPECTED_GROUPS.items() for index in members}
    steps_per_epoch = ROWS // BATCH
    for row in rows:
        step, index = int(row["step"]), int(row["class"])
        assert row["output"] == "sigmoid_eql" and row["group"] == group_of[index]
        assert row["class_name"] == str(index)
        assert int(row["epoch"]) == (step - 1) // steps_per_epoch
        for key in ("positive", "negative", "ratio"):
            assert np.float32(row[key]) == trained["snapshots"][step][key][index]
    final = trained["loss"].gradient_statistics()
    for index, row in enumerate(rows[-NUM_CLASSES:]):
        assert int(row["class"]) == index
        for key in ("positive", "negative", "ratio"):
            assert np.float32(row[key]) == final[key][index]


def test_group_means_reach_logs_and_history(trained):
    history = trained["history"].history
    for group in EXPECTED_GROUPS:
        expected = [group_means(trained["snapshots"][step]["ratio"])[group] for step in trained["epoch_ends"]]
        np.testing.assert_allclose(history[f"sigmoid_eql_ratio_{group}"], expected, rtol=1e-6)


def test_every_n_steps_counts_batches_across_multi_step_executions(tmp_path):
    loss = keras_eql.SigmoidEQL(num_classes=NUM_CLASSES)
    model = tiny_model(loss)
    model.compile(keras.optimizers.SGD(0.1), loss=loss, steps_per_execution=2)
    logger = GradientStatisticsLogger(csv_path=str(tmp_path / "s.csv"), every_n_steps=3)
    snapshots = StatisticsSnapshots(loss)
    features, labels = tiny_data()
    model.fit(features, labels, batch_size=BATCH, epochs=2, shuffle=False, verbose=0,
              callbacks=[logger, snapshots])
    with open(tmp_path / "s.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # Batches begin at steps 0, 2, 4, ...: a log at the first begin past each
    # multiple of 3, plus the epoch ends 8 and 16.
    assert sorted({int(row["step"]) for row in rows}) == [4, 6, 8, 10, 12, 16]
    for row in rows:
        expected = snapshots.by_step[int(row["step"])]["ratio"][int(row["class"])]
        assert np.float32(row["ratio"]) == expected


def test_groups_follow_positives_without_counts_and_names_are_written(tmp_path):
    loss = keras_eql.SoftmaxEQL(num_classes=NUM_CLASSES)
    names = ["cat", "dog", "owl", "eel", "yak", "emu", "gnu"]
    logger = GradientStatisticsLogger(csv_path=str(tmp_path / "s.csv"), class_names=names)
    features, labels = tiny_data(seed=1)
    tiny_model(loss).fit(features, labels, batch_size=16, verbose=0, callbacks=[logger])
    with open(tmp_path / "s.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    positive = loss.gradient_statistics()["positive"]
    ranked = sorted(range(NUM_CLASSES), key=lambda index: -positive[index])  # stable
    expected = dict(zip(ranked, ["head"] * 3 + ["medium"] * 2 + ["tail"] * 2))
    assert [(row["class_name"], row["group"]) for row in rows] == [
        (names[index], expected[index]) for index in range(NUM_CLASSES)]


def two_head_model(loss, outputs="dict"):
    """Heads `a` (4 classes) and `b` (3 classes), as dict or list outputs."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    heads = [keras.layers.Dense(4, name="a")(inputs), keras.layers.Dense(3, name="b")(inputs)]
    model = keras.Model(inputs, dict(zip("ab", heads)) if outputs == "dict" else heads)
    model.compile(keras.optimizers.SGD(0.1), loss=loss)
    return model


def two_head_data(outputs="dict"):
    features = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    labels = [np.arange(16) % 5, np.arange(16) % 4]  # label C: background
    return features, dict(zip("ab", labels)) if outputs == "dict" else labels


def test_every_loss_of_a_multi_output_model_is_logged_under_its_output_name(tmp_path):
    model = two_head_model({"a": keras_eql.SigmoidEQL(), "b": keras_eql.SigmoidEQL()})
    logger = GradientStatisticsLogger(
        log_dir=str(tmp_path / "tb"), csv_path=str(tmp_path / "s.csv"),
        class_counts={"a": [500, 50, 5, 1], "b": [500, 50, 5]})
    history = model.fit(*two_head_data(), verbose=0, callbacks=[logger])
    with open(tmp_path / "s.csv", newline="") as handle:
        counts = {}
        for row in csv.DictReader(handle):
            counts[row["output"]] = counts.get(row["output"], 0) + 1
    assert counts == {"a": 4, "b": 3}
    assert {"a_ratio_tail", "b_ratio_tail", "a_loss", "b_loss"} <= set(history.history)
    tags = set(read_tensors(tmp_path / "tb" / "train"))
    assert {"a/ratio_mean/tail", "b/ratio_mean/tail", "a/gradient_statistics/ratio"} <= tags


@pytest.mark.parametrize("outputs, loss", [
    ("dict", lambda: {"a": keras_eql.SigmoidEQL(name="first"), "b": "binary_crossentropy"}),
    ("dict", lambda: [keras_eql.SigmoidEQL(), keras_eql.SigmoidEQL()]),
    ("list", lambda: [keras_eql.SigmoidEQL(), keras_eql.SigmoidEQL()]),
    ("list", lambda: {"b": keras_eql.SigmoidEQL(), "a": keras_eql.SigmoidEQL()}),
])
def test_gradient_statistics_of_any_model_are_keyed_as_keras_names_the_outputs(outputs, loss):
    model = two_head_model(loss(), outputs)
    features, labels = two_head_data(outputs)
    if outputs == "dict" and not isinstance(model.loss, list):
        labels["b"] = np.eye(3)[np.arange(16) % 3]  # binary cross-entropy wants dense targets
    history = model.fit(features, labels, verbose=0)
    statistics = keras_eql.gradient_statistics(model)
    width = {"a": 4, "b": 3}
    assert set(statistics) <= set(width) and statistics
    for name, values in statistics.items():
        assert f"{name}_loss" in history.history  # Keras's own name for that output's loss
        assert values["ratio"].shape == (width[name],)  # the loss of that output, not another
        assert values["positive"].sum() > 0
    assert list(keras_eql.equalization_losses(model)) == list(statistics)


def test_gradient_statistics_of_a_one_output_model_use_the_loss_name():
    loss = keras_eql.SoftmaxEQL(num_classes=NUM_CLASSES)
    model = tiny_model(loss)
    model.fit(*tiny_data(), verbose=0)
    statistics = keras_eql.gradient_statistics(model)
    assert list(statistics) == ["softmax_eql"]
    np.testing.assert_array_equal(statistics["softmax_eql"]["ratio"], loss.gradient_statistics()["ratio"])
    assert keras_eql.gradient_statistics(tiny_model("sparse_categorical_crossentropy")) == {}


def one_batch_statistics(**fit_kwargs):
    """Statistics of one SoftmaxEQL step on fixed weights (learning rate 0)."""
    loss = keras_eql.SoftmaxEQL(num_classes=NUM_CLASSES)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(NUM_CLASSES)])
    model.compile(keras.optimizers.SGD(0.0), loss=loss)
    features, labels = tiny_data()
    model.fit(features, labels, batch_size=ROWS, verbose=0, **fit_kwargs)
    return labels, keras_eql.gradient_statistics(model)["softmax_eql"]


def test_class_weight_and_sample_weight_enter_the_statistics():
    labels, plain = one_batch_statistics()
    _, weighted = one_batch_statistics(class_weight={index: 1.0 for index in range(NUM_CLASSES)} | {0: 3.0})
    # Keras turns class_weight into a sample_weight per row: the same statistics.
    _, sample_weighted = one_batch_statistics(sample_weight=np.where(labels == 0, 3.0, 1.0))
    for key in ("positive", "negative", "ratio"):
        np.testing.assert_allclose(weighted[key], sample_weighted[key], rtol=1e-6)
    # Class 0's positive gradient comes from its own rows only: three times as much.
    np.testing.assert_allclose(weighted["positive"][0], 3 * plain["positive"][0], rtol=1e-5)
    np.testing.assert_allclose(weighted["positive"][1:], plain["positive"][1:], rtol=1e-5)
    assert (weighted["negative"][1:] > plain["negative"][1:]).all()  # class 0's rows push the others down


def read_csv_groups(path):
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    groups = {}
    for row in rows:
        groups.setdefault(row["group"], set()).add(int(row["class"]))
    return {name: sorted(members) for name, members in groups.items()}


# Thresholds and thirds differ: >100 / 20-100 / <20 gives 4 / 1 / 2 classes.
SHOT_COUNTS = [300, 200, 150, 120, 30, 5, 2]


@pytest.mark.parametrize("groups, expected", [
    (None, {"head": [0, 1, 2], "medium": [3, 4], "tail": [5, 6]}),  # thirds by count rank
    ("shots", {"many": [0, 1, 2, 3], "medium": [4], "few": [5, 6]}),
    ({"tail": [5, 6], "rest": [0, 1, 2, 3, 4]}, {"tail": [5, 6], "rest": [0, 1, 2, 3, 4]}),
    (["f", "f", "f", "f", "c", "r", "r"], {"f": [0, 1, 2, 3], "c": [4], "r": [5, 6]}),
    ({"softmax_eql": "lvis"}, {"frequent": [0, 1, 2, 3], "common": [4], "rare": [5, 6]}),
])
def test_groups_argument(tmp_path, groups, expected):
    loss = keras_eql.SoftmaxEQL(num_classes=NUM_CLASSES)
    logger = GradientStatisticsLogger(csv_path=str(tmp_path / "s.csv"), class_counts=SHOT_COUNTS, groups=groups)
    history = tiny_model(loss).fit(*tiny_data(), batch_size=16, verbose=0, callbacks=[logger])
    assert read_csv_groups(tmp_path / "s.csv") == expected
    ratio = loss.gradient_statistics()["ratio"]
    for name, members in expected.items():
        np.testing.assert_allclose(history.history[f"softmax_eql_ratio_{name}"], [np.mean(ratio[members])],
                                   rtol=1e-6)


def test_shots_are_grouped_accuracys_groups_under_the_same_names(tmp_path):
    logger = GradientStatisticsLogger(csv_path=str(tmp_path / "s.csv"), class_counts=SHOT_COUNTS, groups="shots")
    tiny_model(keras_eql.SoftmaxEQL()).fit(*tiny_data(), batch_size=16, verbose=0, callbacks=[logger])
    metric = GroupedAccuracy(SHOT_COUNTS)
    assert read_csv_groups(tmp_path / "s.csv") == {
        name: np.flatnonzero(metric._groups == index).tolist() for index, name in enumerate(metric._group_names)}


def test_model_without_equalization_loss_warns_once_and_writes_nothing(tmp_path):
    model = tiny_model("sparse_categorical_crossentropy")
    logger = GradientStatisticsLogger(log_dir=str(tmp_path / "tb"), csv_path=str(tmp_path / "s.csv"))
    features, labels = tiny_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            history = model.fit(features, labels, verbose=0, callbacks=[logger])
    ours = [w for w in caught if "GradientStatisticsLogger" in str(w.message)]
    assert len(ours) == 1 and "no keras_eql loss" in str(ours[0].message)
    assert not list(tmp_path.iterdir())
    assert set(history.history) == {"loss"}


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(every_n_steps=0), "every_n_steps"),
    (dict(every_n_steps=True), "every_n_steps"),
    (dict(every_n_steps=2.5), "every_n_steps"),
    (dict(csv_path=3), "csv_path"),
    (dict(image_every_n_epochs=0), "image_every_n_epochs"),
])
def test_bad_arguments_raise(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        GradientStatisticsLogger(**kwargs)


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(class_counts=[1, 2, 3]), "3 entries"),
    (dict(class_counts=[1, 2, -3, 4, 5, 6, 7]), "-3"),
    (dict(class_counts={"other_loss": [1, 2, 3, 4, 5, 6, 7]}), "other_loss"),
    (dict(class_names=["a", "b"]), "7 names"),
    (dict(groups="shots"), "needs class_counts"),
    (dict(groups="quartiles"), "quartiles"),
    (dict(groups=["a", "b"]), "2 labels for 7 classes"),
    (dict(groups={"tail": [5, 9]}), "9"),
])
def test_bad_class_information_raises_at_train_begin(kwargs, fragment):
    model = tiny_model(keras_eql.SigmoidEQL(num_classes=NUM_CLASSES))
    features, labels = tiny_data()
    with pytest.raises(ValueError, match=fragment):
        model.fit(features, labels, verbose=0, callbacks=[GradientStatisticsLogger(**kwargs)])


def test_foreign_csv_is_not_appended_to(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    model = tiny_model(keras_eql.SigmoidEQL())
    features, labels = tiny_data()
    with pytest.raises(ValueError, match="other.csv"):
        model.fit(features, labels, verbose=0, callbacks=[GradientStatisticsLogger(csv_path=str(path))])
    assert path.read_text() == "a,b\n1,2\n"


def test_benchmark_smoke_run():
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "callback_overhead.py"), "--smoke"],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    reported = {line.split()[0] for line in result.stdout.splitlines() if "overhead ratio" in line}
    assert reported == {"logger", "logger_every_50", "logger_no_image", "logger_csv_only"}


def test_docstring_examples_run():
    import keras_eql.callbacks as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
