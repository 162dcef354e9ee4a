"""plot_gradient_statistics and plot_ratio_history: content, PNG size, headless use."""

import csv
import doctest
import io
import itertools
import json
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


def panel_series(figure):
    """Per panel, the values drawn by each series: bar heights, or a step profile's values."""
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import StepPatch

    panels = []
    for axis in figure.axes:
        series = [np.array([path.vertices[1, 1] for path in artist.get_paths()])
                  for artist in axis.collections if isinstance(artist, PolyCollection)]
        series += [patch.get_data().values for patch in axis.patches if isinstance(patch, StepPatch)]
        panels.append(series)
    return panels


def panel_values(figure):
    return [series[0] for series in panel_series(figure)]


def tick_texts(axis):
    return [label.get_text() for label in axis.get_xticklabels()]


def test_panels_sort_classes_by_training_count():
    figure = plot_gradient_statistics(STATS, COUNTS)
    assert isinstance(figure, Figure)
    assert [axis.get_title() for axis in figure.axes] == [
        "accumulated positive gradient", "accumulated negative gradient", "positive / negative ratio"]
    for values, key in zip(panel_values(figure), ["positive", "negative", "ratio"]):
        np.testing.assert_array_equal(values, STATS[key][BY_COUNT])
    assert [axis.get_yscale() for axis in figure.axes] == ["log", "linear", "log"]
    assert tick_texts(figure.axes[0]) == [f"{i} ({COUNTS[i]})" for i in BY_COUNT]  # class and count


def test_without_counts_classes_are_sorted_by_positives_and_named():
    names = ["cat", "dog", "owl", "eel", "yak", "emu"]
    figure = plot_gradient_statistics(STATS, class_names=names)
    by_positive = [1, 4, 2, 5, 0, 3]
    np.testing.assert_array_equal(panel_values(figure)[0], STATS["positive"][by_positive])
    assert tick_texts(figure.axes[2]) == [names[i] for i in by_positive]


def test_plot_accepts_a_loss():
    loss = keras_eql.SoftmaxEQL(num_classes=4)
    figure = plot_gradient_statistics(loss)
    np.testing.assert_array_equal(panel_values(figure)[2], loss.gradient_statistics()["ratio"])


def test_png_is_a_valid_image_of_the_figure_size():
    png = figure_to_png(plot_gradient_statistics(STATS, COUNTS))
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (1200, 400)
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


# LVIS v1's real per-category image counts, as the repository ships them.
LVIS_COUNTS = np.asarray(json.loads(
    (REPO_ROOT / "examples" / "data" / "lvis_v1_image_counts.json").read_text())["image_count"],
    np.float64)


def layout_problems(figure):
    """Text outside the figure, and overlapping tick labels, as matplotlib renders them."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    tight = figure.get_tightbbox(renderer)  # inches, every artist with its text
    width, height = figure.get_size_inches()
    problems = []
    if tight.x0 < -1e-6 or tight.y0 < -1e-6 or tight.x1 > width + 1e-6 or tight.y1 > height + 1e-6:
        problems.append(f"artists span {tight.bounds} in a {width} x {height} figure")
    for axis in figure.axes:
        for labels in (axis.get_xticklabels(), axis.get_yticklabels()):
            boxes = [(label.get_text(), label.get_window_extent(renderer))
                     for label in labels if label.get_visible() and label.get_text()]
            problems += [f"tick labels {a!r} and {b!r} overlap"
                         for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]
    return problems


def random_statistics(num_classes, seed=0):
    rng = np.random.default_rng(seed)
    positive, negative = rng.uniform(0.01, 500.0, num_classes), rng.uniform(10.0, 90.0, num_classes)
    return {"positive": positive, "negative": negative, "ratio": positive / negative}


FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                 "Bag", "Ankle boot"]
FASHION_COUNTS = [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]


@pytest.mark.parametrize("num_classes, kwargs", [
    (10, dict()),
    (10, dict(class_names=FASHION_NAMES)),  # the x label was cut off with names
    (10, dict(class_counts=FASHION_COUNTS, class_names=FASHION_NAMES, baseline=True, groups="thirds")),
    (10, dict(class_counts=FASHION_COUNTS, class_names=FASHION_NAMES, figsize=(6.0, 3.0), dpi=150)),
    (1203, dict(class_counts=LVIS_COUNTS)),
    (1203, dict(class_names=[f"lvis_category_{i}" for i in range(1203)])),
    (1203, dict(class_counts=LVIS_COUNTS, baseline=True, groups="lvis")),
])
def test_figure_1_fits_its_canvas_and_tick_labels_never_overlap(num_classes, kwargs):
    if kwargs.get("baseline"):
        kwargs["baseline"] = random_statistics(num_classes, seed=1)
    figure = plot_gradient_statistics(random_statistics(num_classes), **kwargs)
    assert layout_problems(figure) == []
    assert all(axis.get_ylabel() for axis in figure.axes)  # every panel says what its y axis is
    assert all(tick_texts(axis) for axis in figure.axes)  # named or counted ticks, thinned if need be
    if num_classes > 100:
        assert len(tick_texts(figure.axes[0])) <= 20


def test_many_classes_get_thinned_ticks_that_show_the_training_count():
    figure = plot_gradient_statistics(random_statistics(1203), LVIS_COUNTS)
    order = np.argsort(-LVIS_COUNTS, kind="stable")
    axis = figure.axes[0]
    ranks = (axis.get_xticks() - 0.5).astype(int)
    assert ranks[0] == 0 and len(ranks) > 3
    assert tick_texts(axis) == [str(int(LVIS_COUNTS[order[rank]])) for rank in ranks]
    assert "ticks: count" in " ".join(text.get_text() for text in figure.texts)


def test_bars_have_gaps_and_a_baseline_is_drawn_beside():
    from matplotlib.collections import PolyCollection

    baseline = {key: values * 2 for key, values in STATS.items()}
    figure = plot_gradient_statistics(STATS, COUNTS, baseline=baseline, label="softmax_eql",
                                      baseline_label="cross-entropy")
    for axis, (main, second), key in zip(figure.axes, panel_series(figure), ["positive", "negative", "ratio"]):
        np.testing.assert_array_equal(main, STATS[key][BY_COUNT])
        np.testing.assert_array_equal(second, baseline[key][BY_COUNT])
        bars = [path.vertices[:4, 0] for artist in axis.collections if isinstance(artist, PolyCollection)
                for path in artist.get_paths()]
        edges = sorted((left.min(), left.max()) for left in bars)
        gaps = [next_left - right for (_, right), (next_left, _) in zip(edges, edges[1:])]
        assert min(gaps) >= 0 and max(gaps) > 0.1  # side by side within a class, a gap between classes
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == ["softmax_eql", "cross-entropy"]
    with pytest.raises(ValueError, match="baseline has 3 classes"):
        plot_gradient_statistics(STATS, baseline={"positive": [1.0] * 3, "negative": [1.0] * 3, "ratio": [1.0] * 3})


def test_title_names_the_loss_and_its_training_steps():
    loss = keras_eql.SoftmaxEQL(num_classes=3)
    loss.statistics.assign([1.0, 2.0, 3.0], [2.0, 2.0, 2.0], 1392)
    figure = plot_gradient_statistics(loss)
    assert "softmax_eql: gradient statistics after 1,392 training steps" in [text.get_text() for text in figure.texts]
    figure = plot_gradient_statistics(STATS, title="Fig. 1")
    assert "Fig. 1" in [text.get_text() for text in figure.texts]


def test_groups_sort_shade_and_name_the_classes():
    figure = plot_gradient_statistics(STATS, COUNTS, groups={"odd": [1, 3, 5], "even": [0, 2, 4]})
    # Group by group, the most frequent first within each.
    np.testing.assert_array_equal(panel_values(figure)[0], STATS["positive"][[1, 5, 3, 4, 2, 0]])
    names = [text.get_text() for text in figure.axes[0].texts]
    assert names == ["odd", "even"]
    shots = plot_gradient_statistics(STATS, COUNTS, groups="shots")
    assert [text.get_text() for text in shots.axes[1].texts] == ["many", "medium", "few"]
    with pytest.raises(ValueError, match="needs class_counts"):
        plot_gradient_statistics(STATS, groups="lvis")


def test_panels_can_be_chosen():
    figure = plot_gradient_statistics(STATS, COUNTS, panels=["ratio"], title="", figsize=(3.0, 2.0), dpi=220)
    assert [axis.get_title() for axis in figure.axes] == ["positive / negative ratio"]
    np.testing.assert_array_equal(panel_values(figure)[0], STATS["ratio"][BY_COUNT])
    assert not any(text.get_text() for text in figure.texts if text.get_fontsize() > 10)  # no figure title
    assert layout_problems(figure) == []
    with pytest.raises(ValueError, match="panels must be some of"):
        plot_gradient_statistics(STATS, panels=["ratio", "ratio"])


@pytest.mark.parametrize("figsize, dpi, size", [((6.0, 3.0), 200, (1200, 600)), ((16.0, 5.0), 72, (1152, 360))])
def test_figure_size_and_dpi_are_arguments(tmp_path, figsize, dpi, size):
    png = figure_to_png(plot_gradient_statistics(STATS, COUNTS, figsize=figsize, dpi=dpi))
    assert Image.open(io.BytesIO(png)).size == size
    path = tmp_path / "history.csv"
    write_history(path)
    png = figure_to_png(plot_ratio_history(str(path), output="l", figsize=figsize, dpi=dpi))
    assert Image.open(io.BytesIO(png)).size == size


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(figsize=(0, 3)), "figsize"), (dict(dpi=-1), "dpi"), (dict(figsize=(1.0, 4.0)), "too narrow"),
    (dict(figsize=(12.0, 0.8)), "too short")])
def test_bad_figure_sizes_raise(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        plot_gradient_statistics(STATS, COUNTS, **kwargs)


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
    figure = plot_ratio_history(str(path), output="l", classes=[0, "c"],
                                groups={"head": [0, "b"], "tail": ["c"]})
    assert line_data(figure) == {
        "class 0": [[10, 1.0], [20, 0.75]],
        "class c": [[10, 0.05], [20, 0.025]],
        "head (mean)": [[10, (1.0 + 0.25) / 2], [20, (0.75 + 0.125) / 2]],
        "tail (mean)": [[10, 0.05], [20, 0.025]],
    }
    default = line_data(plot_ratio_history(str(path), output="l"))  # the logger's groups, by step
    assert list(default) == ["head (mean)", "medium (mean)", "tail (mean)"]
    assert default["medium (mean)"] == [[10, 0.25]]
    assert default["head (mean)"] == [[10, 1.0], [20, (0.75 + 0.125) / 2]]
    relabelled = line_data(plot_ratio_history(str(path), output="l", groups=["r", "f", "f"]))
    assert relabelled == {"f (mean)": [[10, (0.25 + 0.05) / 2], [20, (0.125 + 0.025) / 2]],
                          "r (mean)": [[10, 1.0], [20, 0.75]]}
    png = Image.open(io.BytesIO(figure_to_png(figure)))
    assert png.size == (800, 450)
    assert layout_problems(figure) == []
    axis = figure.axes[0]
    assert axis.get_xlabel() and axis.get_ylabel() and axis.get_title().startswith("l: ")


def test_ratio_history_reads_files_written_before_the_output_column(tmp_path):
    path = tmp_path / "old.csv"
    write_history(path)
    path.write_text(path.read_text().replace(",output,", ",loss,", 1))
    assert line_data(plot_ratio_history(str(path), output="m")) == {"head (mean)": [[10, 1.0]]}


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(), "pick one"),
    (dict(output="x"), "no output 'x'"),
    (dict(output="l", classes=[7]), "class 7"),
    (dict(output="l", groups=["few"]), "1 labels for 3 classes"),
    (dict(output="l", groups={"few": [7]}), "class 7"),
    (dict(output="l", classes=[], groups={}), "nothing to draw"),
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
    assert Image.open(tmp_path / "out.png").size == (1200, 400)


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
    assert list((tmp_path / "train").glob("events.out.tfevents.*"))


def test_docstring_examples_run():
    import keras_eql.plotting as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
