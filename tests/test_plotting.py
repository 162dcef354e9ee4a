"""plot_gradient_statistics and plot_ratio_history: content, PNG size, headless use."""

import csv
import doctest
import io
import os
import pathlib
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

import keras_eql  # noqa: E402
from keras_eql.callbacks import CSV_COLUMNS  # noqa: E402
from keras_eql.plotting import (  # noqa: E402
    StatisticsFigure,
    figure_to_png,
    plot_gradient_statistics,
    plot_ratio_history,
)

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
STATS = {
    "positive": np.array([0.5, 400.0, 30.0, 0.4, 200.0, 9.0]),  # spans 1000x: log axis
    "negative": np.array([50.0, 90.0, 70.0, 40.0, 80.0, 60.0]),  # spans 2.25x: linear
    "ratio": np.array([0.01, 4.4, 0.43, 0.01, 2.5, 0.15]),
}
COUNTS = [5, 500, 50, 1, 200, 20]
BY_COUNT = [1, 4, 2, 5, 0, 3]  # most frequent first, by hand


def panel_values(figure):
    return [axis.patches[0].get_data().values for axis in figure.axes]


def test_panels_sort_classes_by_training_count():
    figure = plot_gradient_statistics(STATS, COUNTS)
    assert isinstance(figure, Figure)
    assert [axis.get_title() for axis in figure.axes] == [
        "accumulated positive gradient", "accumulated negative gradient", "positive / negative ratio"]
    for values, key in zip(panel_values(figure), ["positive", "negative", "ratio"]):
        np.testing.assert_array_equal(values, STATS[key][BY_COUNT])
    assert [axis.get_yscale() for axis in figure.axes] == ["log", "linear", "log"]
    assert [label.get_text() for label in figure.axes[0].get_xticklabels()] == [str(i) for i in BY_COUNT]


def test_without_counts_classes_are_sorted_by_positives_and_named():
    names = ["cat", "dog", "owl", "eel", "yak", "emu"]
    figure = plot_gradient_statistics(STATS, class_names=names)
    by_positive = [1, 4, 2, 5, 0, 3]
    np.testing.assert_array_equal(panel_values(figure)[0], STATS["positive"][by_positive])
    assert [label.get_text() for label in figure.axes[2].get_xticklabels()] == [names[i] for i in by_positive]


def test_plot_accepts_a_loss():
    loss = keras_eql.SoftmaxEQL(num_classes=4)
    figure = plot_gradient_statistics(loss)
    np.testing.assert_array_equal(panel_values(figure)[2], loss.gradient_statistics()["ratio"])


def test_png_is_a_valid_image_of_the_figure_size():
    png = figure_to_png(plot_gradient_statistics(STATS, COUNTS))
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (960, 272)
    image.verify()
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    assert pixels.std() > 0


def test_a_reused_figure_draws_exactly_what_a_fresh_one_draws():
    linear = {key: np.linspace(1.0, 2.0, 6) for key in ("positive", "negative", "ratio")}
    panels = StatisticsFigure()
    panels.update(STATS, COUNTS)  # log axes, sorted by count
    panels.update(linear, class_names=list("abcdef"))
    fresh = StatisticsFigure()
    fresh.update(linear, class_names=list("abcdef"))
    np.testing.assert_array_equal(panels.rgba(), fresh.rgba())
    assert [axis.get_yscale() for axis in panels.figure.axes] == ["linear"] * 3


def test_redrawing_new_statistics_renders_only_what_they_change(monkeypatch):
    panels = StatisticsFigure()
    full_draws = []
    draw_everything = panels.figure.draw
    monkeypatch.setattr(panels.figure, "draw", lambda renderer: (full_draws.append(1), draw_everything(renderer)))
    panels.update(STATS, COUNTS)
    panels.rgba()
    assert len(full_draws) == 1
    rescaled = {"positive": STATS["positive"] * 1e3, "negative": STATS["negative"][::-1], "ratio": STATS["ratio"]}
    panels.update(rescaled, COUNTS)  # new values and y axes, same classes
    redrawn = panels.rgba().copy()
    assert len(full_draws) == 1  # the kept titles and class axes, with bars and y axes drawn on them
    panels.figure.canvas.draw()
    np.testing.assert_array_equal(redrawn, np.asarray(panels.figure.canvas.buffer_rgba()))
    panels.update(rescaled, COUNTS, class_names=list("abcdef"))  # new class labels: all anew
    panels.rgba()
    assert len(full_draws) == 3


@pytest.mark.parametrize("value, label", [
    (0.0, "0"), (0.25, "0.25"), (40.0, "40"), (20000.0, "2e4"), (1.5e-3, "0.0015"), (123456.0, "1.23e5"),
    (2.5e-7, "2.5e-7"),
])
def test_tick_labels_are_short_and_plain(value, label):
    from keras_eql.plotting import _short_number

    assert _short_number(value) == label


@pytest.mark.parametrize("stats, counts, fragment", [
    ({"positive": [1.0]}, None, "'ratio'"),
    ({"positive": [1.0, 2.0], "negative": [1.0], "ratio": [1.0, 1.0]}, None, "shapes"),
    (STATS, [1, 2, 3], "3 entries"),
    (STATS, [1, 2, 3, 4, 5, -6], "-6"),
    ([1, 2, 3], None, "keras_eql loss or a dict"),
])
def test_plot_gradient_statistics_bad_inputs(stats, counts, fragment):
    with pytest.raises(ValueError, match=fragment):
        plot_gradient_statistics(stats, counts)


def write_history(path):
    """A hand-made logger CSV: loss 'l' (3 classes, steps 10 and 20, step 20
    repeated with new values) and loss 'm' (1 class)."""
    rows = [
        (0, 10, "l", 0, "a", "head", 5.0, 5.0, 1.0),
        (0, 10, "l", 1, "b", "medium", 1.0, 4.0, 0.25),
        (0, 10, "l", 2, "c", "tail", 0.1, 2.0, 0.05),
        (1, 20, "l", 0, "a", "head", 9.0, 10.0, 0.5),
        (1, 20, "l", 1, "b", "head", 1.0, 8.0, 0.125),
        (1, 20, "l", 2, "c", "tail", 0.1, 4.0, 0.025),
        (1, 20, "l", 0, "a", "head", 9.0, 12.0, 0.75),
        (0, 10, "m", 0, "z", "head", 1.0, 1.0, 1.0),
    ]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)


def line_data(figure):
    axis = figure.axes[0]
    return {line.get_label(): line.get_xydata().tolist() for line in axis.get_lines()}


def test_ratio_history_lines_for_classes_and_group_means(tmp_path):
    path = tmp_path / "history.csv"
    write_history(path)
    figure = plot_ratio_history(str(path), loss_name="l", classes=[0, "c"], groups=["head", "tail"])
    assert line_data(figure) == {
        "class 0": [[10, 1.0], [20, 0.75]],
        "class c": [[10, 0.05], [20, 0.025]],
        "head (mean)": [[10, 1.0], [20, (0.75 + 0.125) / 2]],
        "tail (mean)": [[10, 0.05], [20, 0.025]],
    }
    default = line_data(plot_ratio_history(str(path), loss_name="l"))
    assert list(default) == ["head (mean)", "medium (mean)", "tail (mean)"]
    assert default["medium (mean)"] == [[10, 0.25]]
    png = Image.open(io.BytesIO(figure_to_png(figure)))
    assert png.size == (640, 360)


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(), "pick one"),
    (dict(loss_name="x"), "no loss 'x'"),
    (dict(loss_name="l", classes=[7]), "class 7"),
    (dict(loss_name="l", groups=["few"]), "no group 'few'"),
    (dict(loss_name="l", classes=[], groups=[]), "nothing to draw"),
])
def test_ratio_history_bad_selections(tmp_path, kwargs, fragment):
    path = tmp_path / "history.csv"
    write_history(path)
    with pytest.raises(ValueError, match=fragment):
        plot_ratio_history(str(path), **kwargs)


def test_ratio_history_rejects_a_foreign_csv(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("step,loss\n1,x\n")
    with pytest.raises(ValueError, match="lacks columns"):
        plot_ratio_history(str(path))


def run_python(code, **env):
    environment = {key: value for key, value in os.environ.items() if key != "DISPLAY"}
    environment.update(TF_CPP_MIN_LOG_LEVEL="2", **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=180, cwd=REPO_ROOT, env=environment)


def test_plots_render_headless_under_agg_without_pyplot_figures(tmp_path):
    result = run_python(f"""
        import matplotlib, matplotlib.pyplot as plt
        from keras_eql.plotting import figure_to_png, plot_gradient_statistics
        figure = plot_gradient_statistics(
            {{"positive": [3.0, 1.0], "negative": [6.0, 9.0], "ratio": [0.5, 0.1]}})
        open({str(tmp_path / "out.png")!r}, "wb").write(figure_to_png(figure))
        print(matplotlib.get_backend().lower(), plt.get_fignums())
    """, MPLBACKEND="Agg")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["agg", "[]"]  # nothing registered with pyplot
    assert Image.open(tmp_path / "out.png").size == (960, 272)


def test_without_matplotlib_plots_explain_and_the_logger_skips_images(tmp_path):
    result = run_python(f"""
        import sys, warnings
        sys.modules["matplotlib"] = None  # as if the 'plot' extra were not installed
        import keras, numpy as np, keras_eql, keras_eql.callbacks
        from keras_eql.plotting import plot_gradient_statistics
        try:
            plot_gradient_statistics({{"positive": [1.0], "negative": [1.0], "ratio": [1.0]}})
        except ImportError as error:
            print("ImportError:", error)
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
        model.compile("sgd", loss=keras_eql.SoftmaxEQL())
        logger = keras_eql.callbacks.GradientStatisticsLogger(log_dir={str(tmp_path)!r})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(np.ones((4, 2)), np.arange(4) % 3, epochs=2, verbose=0, callbacks=[logger])
        print("warnings:", sum("no image summaries" in str(w.message) for w in caught))
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ImportError: keras_eql.plotting needs matplotlib: pip install 'keras-eql[plot]'." in result.stdout
    assert "warnings: 1" in result.stdout
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_docstring_examples_run():
    import keras_eql.plotting as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
