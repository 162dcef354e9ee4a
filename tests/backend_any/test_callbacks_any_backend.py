"""`GradientStatisticsLogger`, plots and metrics under KERAS_BACKEND=jax and =torch, without TensorFlow.

The JAX trainer keeps the model's state outside the model during an epoch
and syncs it back only at epoch ends, so the logger's mid-epoch rows are
compared with a second run stopped at that step.
"""

import csv
import importlib.util

import keras
import numpy as np
import pytest

import keras_eql
from helpers import NUM_CLASSES, long_tailed_data, make_model

ROWS, BATCH = 64, 16  # 4 steps per epoch


def _fit(epochs, logger=None, steps=None):
    features, labels = long_tailed_data("softmax_eql", rows=ROWS)
    model = make_model()
    model.compile(keras.optimizers.SGD(0.5), loss=keras_eql.SoftmaxEQL(num_classes=NUM_CLASSES))
    keras_eql.attach(model)
    if steps is not None:
        features, labels = features[:steps * BATCH], labels[:steps * BATCH]
    model.fit(features, labels, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
              callbacks=[logger] if logger else [])
    return model


def _rows_by_step(path):
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_step = {}
    for row in rows:
        by_step.setdefault(int(row["step"]), []).append(row)
    return by_step


def _column(rows, key):
    return np.array([float(row[key]) for row in sorted(rows, key=lambda row: int(row["class"]))])


def test_logger_csv_and_plots_show_the_loss_statistics(tmp_path):
    path = tmp_path / "statistics.csv"
    logger = keras_eql.GradientStatisticsLogger(csv_path=path, every_n_steps=2,
                                                class_counts=[40, 12, 6, 4, 2])
    model = _fit(epochs=2, logger=logger)
    stats = model.loss.gradient_statistics()
    assert model.loss.statistics.step_count() == 8
    by_step = _rows_by_step(path)
    assert sorted(by_step) == [2, 4, 6, 8]
    for key in ("positive", "negative", "ratio"):
        np.testing.assert_allclose(_column(by_step[8], key), stats[key], rtol=1e-6)
    # A mid-epoch row holds the state of its step, not that of the epoch's start.
    reference = _fit(epochs=1, steps=2).loss.gradient_statistics()
    for key in ("positive", "negative", "ratio"):
        np.testing.assert_allclose(_column(by_step[2], key), reference[key], rtol=1e-5)
    assert not np.allclose(_column(by_step[6], "positive"), _column(by_step[4], "positive"))
    assert not np.allclose(_column(by_step[6], "positive"), _column(by_step[8], "positive"))

    pytest.importorskip("matplotlib", reason="the plots need matplotlib (make test installs it)")
    from matplotlib.collections import PolyCollection

    figure = keras_eql.plot_gradient_statistics(model.loss, [40, 12, 6, 4, 2])
    for axis, key in zip(figure.axes, ("positive", "negative", "ratio")):
        (bars,) = [artist for artist in axis.collections if isinstance(artist, PolyCollection)]
        heights = np.array([p.vertices[1, 1] for p in bars.get_paths()])
        np.testing.assert_allclose(heights, stats[key], rtol=1e-6)  # classes already by count
    history = keras_eql.plot_ratio_history(path, classes=[4])
    steps, ratios = history.axes[0].lines[0].get_data()
    assert list(steps) == [2, 4, 6, 8]
    np.testing.assert_allclose(ratios[-1], stats["ratio"][4], rtol=1e-6)
    figure.savefig(tmp_path / "statistics.png")
    assert (tmp_path / "statistics.png").stat().st_size > 0


def test_logger_puts_group_ratios_in_the_history():
    logger = keras_eql.GradientStatisticsLogger(class_counts=[40, 12, 6, 4, 2])
    model = _fit(epochs=2, logger=logger)
    ratio = model.loss.gradient_statistics()["ratio"]
    groups = keras_eql.metrics.class_groups("thirds", [40, 12, 6, 4, 2], num_classes=NUM_CLASSES)
    history = model.history.history
    for name, members in groups.items():
        assert history[f"softmax_eql_ratio_{name}"][-1] == pytest.approx(np.mean(ratio[members]), rel=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                    reason="checks the error of a host without TensorFlow")
def test_tensorboard_output_without_tensorflow_says_what_to_install(tmp_path):
    with pytest.raises(ImportError, match="pip install tensorflow-cpu"):
        keras_eql.GradientStatisticsLogger(log_dir=tmp_path)


def test_grouped_accuracy_metric_off_tensorflow():
    """The docstring example of `GroupedAccuracy`, whose values the TF tests check too."""
    metric = keras_eql.metrics.GroupedAccuracy([500, 60, 5])
    metric.update_state(np.array([0, 1, 2, 2]), np.eye(3)[[0, 1, 2, 0]])
    result = {key: float(value) for key, value in metric.result().items()}
    assert result == pytest.approx({"grouped_accuracy": 0.75, "grouped_accuracy_many": 1.0,
                                    "grouped_accuracy_medium": 1.0, "grouped_accuracy_few": 0.5})
