"""Figures of the gradient statistics, after Tan et al.'s Fig. 1 and Fig. 2.

matplotlib is an optional extra (`pip install keras-eql[plot]`), imported
inside the functions. Figures are built as `matplotlib.figure.Figure` on an
Agg canvas, never through pyplot: no global state, no display needed, safe
to call from a training callback.
"""

import csv
import io

import numpy as np

from keras_eql.metrics import _check_counts

STATISTICS_PANELS = (
    ("positive", "accumulated positive gradient"),
    ("negative", "accumulated negative gradient"),
    ("ratio", "positive / negative ratio"),
)
# Up to this many classes, every class gets its own tick label.
MAX_LABELLED_CLASSES = 20
# A panel switches to a log axis when its values span this many times.
LOG_SCALE_SPAN = 100.0


def _new_figure(width, height, dpi):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("keras_eql.plotting needs matplotlib: pip install 'keras-eql[plot]'.") from error
    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def figure_to_png(figure):
    """Encodes a figure as PNG bytes at its own size and dpi.

    Args:
        figure: a `matplotlib.figure.Figure`.

    Returns:
        The PNG file content, `figure.get_size_inches() * figure.dpi` pixels.

    Example:
        >>> png = figure_to_png(plot_gradient_statistics(
        ...     {"positive": [3.0, 1.0], "negative": [6.0, 9.0], "ratio": [0.5, 0.1]}))
        >>> png[:4]
        b'\\x89PNG'
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    return buffer.getvalue()


def _as_statistics(stats_or_loss):
    if hasattr(stats_or_loss, "gradient_statistics"):
        stats_or_loss = stats_or_loss.gradient_statistics()
    if not isinstance(stats_or_loss, dict) or not {"positive", "negative", "ratio"} <= set(stats_or_loss):
        raise ValueError(
            "plot_gradient_statistics: expected a keras_eql loss or a dict with "
            f"'positive', 'negative' and 'ratio', got {stats_or_loss!r:.200}.")
    stats = {key: np.asarray(stats_or_loss[key], np.float64) for key, _ in STATISTICS_PANELS}
    shapes = {key: value.shape for key, value in stats.items()}
    if len(set(shapes.values())) != 1 or stats["ratio"].ndim != 1 or stats["ratio"].size == 0:
        raise ValueError(
            f"plot_gradient_statistics: expected three equal 1-D non-empty arrays, got shapes {shapes}.")
    return stats


def _log_baseline(values):
    """Baseline of a log y-axis if the values warrant one, else None.

    Log when every finite value is positive and they span 100x or more.
    """
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() >= LOG_SCALE_SPAN:
        return finite.min() / 2.0
    return None


def _short_number(value, _position=None):
    """A tick label without an offset or mathtext: `0.25`, `40`, `2e4`, `1.5e-3`.

    Matplotlib's default formatters can add an offset text ("1e6" above the
    axis, which also moves the title) and render log ticks as mathtext; both
    are costly to redraw every epoch, and this reads as well.
    """
    mantissa, _, exponent = f"{value:.3g}".partition("e")
    return mantissa + (f"e{int(exponent)}" if exponent else "")


class StatisticsFigure:
    """The three-panel figure, built once and redrawn cheaply with new statistics.

    Building the axes costs more than drawing them, so a caller that plots
    repeatedly (`GradientStatisticsLogger`, every epoch) keeps one instance.
    `rgba` renders the parts that do not change with the statistics (titles,
    class axes) once, keeps those pixels, and then redraws only the bars,
    spines and y axes on top of them: text rendering and layout are most of
    matplotlib's cost, and the class axes hold most of the text. The kept
    pixels are rendered anew when the classes, their order or names change.

    Example:
        >>> panels = StatisticsFigure()
        >>> figure = panels.update({"positive": [1.0, 2.0], "negative": [4.0, 4.0],
        ...                         "ratio": [0.25, 0.5]})
        >>> panels.rgba().shape
        (272, 960, 4)
    """

    def __init__(self):
        self.figure = _new_figure(12.0, 3.4, 80)  # first: it explains a missing matplotlib
        from matplotlib.ticker import FuncFormatter

        self.figure.subplots_adjust(left=0.05, right=0.99, bottom=0.2, top=0.9, wspace=0.22)
        self._axes = self.figure.subplots(1, 3)
        self._tick_formatter = FuncFormatter(_short_number)
        for axis, (_, title) in zip(self._axes, STATISTICS_PANELS):
            axis.stairs([0.0], [0.0, 1.0], fill=True, color="tab:blue", alpha=0.8)
            # Fixed title and y-label positions: matplotlib would otherwise
            # measure every tick label at every draw to place them.
            axis.set_title(title, y=1.02)
            axis.yaxis.set_label_coords(-0.1, 0.5)
            axis.yaxis.set_major_formatter(self._tick_formatter)
        self._class_axes_key = None  # what the class (x) axes show
        self._background = None  # pixels of everything but `_changing_artists`
        self._background_size = None

    def update(self, stats_or_loss, class_counts=None, *, class_names=None):
        """Redraws the panels with new statistics.

        Args:
            stats_or_loss: a keras_eql loss, or a dict like its
                `gradient_statistics()`.
            class_counts: optional training samples per class (the x order).
            class_names: optional tick labels (up to 20 classes).

        Returns:
            The updated `matplotlib.figure.Figure`.
        """
        from matplotlib.ticker import AutoLocator, NullFormatter, ScalarFormatter

        stats = _as_statistics(stats_or_loss)
        num_classes = stats["ratio"].size
        if class_counts is not None:
            counts = _check_counts("plot_gradient_statistics: class_counts", class_counts)
            if counts.size != num_classes:
                raise ValueError(
                    f"plot_gradient_statistics: class_counts has {counts.size} entries, "
                    f"the statistics have {num_classes} classes.")
            order, sorted_by = np.argsort(-counts, kind="stable"), "training count"
        else:
            order, sorted_by = np.argsort(-stats["positive"], kind="stable"), "positives seen"
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"plot_gradient_statistics: {len(class_names)} class_names for {num_classes} classes.")
        labels = None
        if num_classes <= MAX_LABELLED_CLASSES:
            labels = tuple(str(i) if class_names is None else str(class_names[i]) for i in order)
        class_axes_key = (num_classes, sorted_by, labels, class_names is None)
        edges = np.arange(num_classes + 1)
        for axis, (key, _) in zip(self._axes, STATISTICS_PANELS):
            values = stats[key][order]
            baseline = _log_baseline(values)
            axis.patches[0].set_data(values, edges, 0.0 if baseline is None else baseline)
            axis.relim()  # before the scale: a log axis needs the new, positive limits
            scale = "linear" if baseline is None else "log"
            if axis.get_yscale() != scale:  # a new scale brings new default ticks
                axis.set_yscale(scale)
                axis.yaxis.set_major_formatter(self._tick_formatter)
                axis.yaxis.set_minor_formatter(NullFormatter())
            axis.autoscale_view()
            if class_axes_key == self._class_axes_key:
                continue
            axis.set_xlim(0, num_classes)
            axis.set_xlabel(f"classes by {sorted_by} (frequent first)")
            if labels is not None:
                axis.set_xticks(edges[:-1] + 0.5, labels, fontsize="small",
                                rotation=0 if class_names is None else 90)
            else:
                axis.xaxis.set_major_locator(AutoLocator())
                axis.xaxis.set_major_formatter(ScalarFormatter())
        if class_axes_key != self._class_axes_key:
            self._class_axes_key, self._background = class_axes_key, None
        return self.figure

    def _changing_artists(self):
        """What the statistics change, in the order `Axes.draw` draws them."""
        return [artist for axis in self._axes
                for artist in (axis.patches[0], *axis.spines.values(), axis.yaxis)]

    def rgba(self):
        """The drawn figure as a `(height, width, 4)` uint8 array.

        The same pixels for the same statistics, whether this figure drew
        others before or not.
        """
        canvas = self.figure.canvas
        changing = self._changing_artists()
        size = tuple(self.figure.bbox.size)  # kept pixels of another size (dpi) do not fit
        if self._background is None or self._background_size != size:
            for artist in changing:
                artist.set_visible(False)
            try:
                canvas.draw()
            finally:
                for artist in changing:
                    artist.set_visible(True)
            self._background = canvas.copy_from_bbox(self.figure.bbox)
            self._background_size = size
        else:
            canvas.restore_region(self._background)
        renderer = canvas.get_renderer()
        for artist in changing:
            artist.draw(renderer)
        return np.asarray(canvas.buffer_rgba())


def plot_gradient_statistics(stats_or_loss, class_counts=None, *, class_names=None):
    """Three panels, positive, negative and ratio, per class (Tan et al., Fig. 1).

    Classes run along the x axis from the most to the least frequent: by
    `class_counts` when given, else by accumulated positive gradient (the
    positives seen). A panel is log-scaled when its values are all positive
    and span two orders of magnitude or more.

    Args:
        stats_or_loss: a keras_eql loss, or a dict like its
            `gradient_statistics()` (`positive`, `negative`, `ratio`).
        class_counts: optional training samples per class.
        class_names: optional names, used as tick labels for up to 20 classes.

    Returns:
        A `matplotlib.figure.Figure` of 960 x 272 pixels (12 x 3.4 in, 80 dpi).

    Example:
        >>> figure = plot_gradient_statistics(
        ...     {"positive": [30.0, 3.0, 0.3], "negative": [60.0, 90.0, 99.0],
        ...      "ratio": [0.5, 0.03, 0.003]}, class_counts=[500, 50, 5])
        >>> [axis.get_title() for axis in figure.axes][2]
        'positive / negative ratio'
    """
    return StatisticsFigure().update(stats_or_loss, class_counts, class_names=class_names)


def _read_history(csv_path):
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    required = {"step", "loss", "class", "class_name", "group", "ratio"}
    if not rows or not required <= set(rows[0]):
        raise ValueError(
            f"plot_ratio_history: {csv_path!r} is empty or lacks columns "
            f"{sorted(required - set(rows[0] if rows else ()))}; expected a "
            "GradientStatisticsLogger CSV.")
    return rows


def plot_ratio_history(csv_path, *, loss_name=None, classes=None, groups=None):
    """Ratio against training step (Tan et al., Fig. 2).

    Reads a `GradientStatisticsLogger` CSV and draws one line per selected
    class and one per selected group (the mean ratio of the group's classes
    at each step). Repeated rows of a step and class keep the last value.

    Args:
        csv_path: path of the CSV written by `GradientStatisticsLogger`.
        loss_name: which loss to plot; may be omitted if the file has one.
        classes: class indices or names to draw individually.
        groups: group names (`"head"`, `"medium"`, `"tail"`) whose mean to
            draw; by default every group in the file when `classes` is None,
            none otherwise.

    Returns:
        A `matplotlib.figure.Figure` of 640 x 360 pixels (8 x 4.5 in, 80 dpi).

    Example:
        >>> import os, tempfile, keras, keras_eql, numpy as np
        >>> from keras_eql.callbacks import GradientStatisticsLogger
        >>> path = os.path.join(tempfile.mkdtemp(), "ratios.csv")
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> model.compile("sgd", loss=keras_eql.SoftmaxEQL())
        >>> _ = model.fit(np.ones((8, 4)), np.arange(8) % 3, epochs=2, verbose=0,
        ...               callbacks=[GradientStatisticsLogger(csv_path=path)])
        >>> figure = plot_ratio_history(path, classes=[0], groups=["tail"])
        >>> [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
        ['class 0', 'tail (mean)']
    """
    rows = _read_history(csv_path)
    losses = sorted({row["loss"] for row in rows})
    if loss_name is None and len(losses) > 1:
        raise ValueError(
            f"plot_ratio_history: {csv_path!r} holds losses {losses}; pick one with `loss_name`.")
    loss_name = losses[0] if loss_name is None else loss_name
    if loss_name not in losses:
        raise ValueError(f"plot_ratio_history: no loss {loss_name!r} in {csv_path!r}; it holds {losses}.")
    latest = {(int(row["step"]), int(row["class"])): row for row in rows if row["loss"] == loss_name}

    lines = []
    for wanted in [] if classes is None else classes:
        matches = {c for (_, c), row in latest.items() if str(wanted) in (row["class"], row["class_name"])}
        if len(matches) != 1:
            raise ValueError(
                f"plot_ratio_history: class {wanted!r} matches {len(matches)} classes of {loss_name!r}.")
        (index,) = matches
        series = sorted((step, float(row["ratio"])) for (step, c), row in latest.items() if c == index)
        lines.append((f"class {wanted}", series))

    ratios_by_group = {}
    for (step, _), row in latest.items():
        ratios_by_group.setdefault(row["group"], {}).setdefault(step, []).append(float(row["ratio"]))
    present = [g for g in ("head", "medium", "tail") if g in ratios_by_group]
    present += sorted(set(ratios_by_group) - set(present))
    for group in present if groups is None and classes is None else groups or []:
        if group not in ratios_by_group:
            raise ValueError(f"plot_ratio_history: no group {group!r} in {csv_path!r}; it holds {present}.")
        series = sorted((step, float(np.mean(r))) for step, r in ratios_by_group[group].items())
        lines.append((f"{group} (mean)", series))
    if not lines:
        raise ValueError("plot_ratio_history: nothing to draw; pass `classes` or `groups`.")

    figure = _new_figure(8.0, 4.5, 80)
    axis = figure.add_subplot()
    for label, series in lines:
        steps, ratios = zip(*series)
        axis.plot(steps, ratios, marker="o" if len(steps) < 30 else None, markersize=3, label=label)
    if _log_baseline(np.asarray([ratio for _, series in lines for _, ratio in series])) is not None:
        axis.set_yscale("log")
    axis.set_xlabel("training step")
    axis.set_ylabel("positive / negative ratio")
    axis.set_title(f"{loss_name}: gradient ratio during training")
    axis.legend(fontsize="small")
    figure.tight_layout()
    return figure
