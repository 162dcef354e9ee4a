"""Figures of the gradient statistics, after Tan et al.'s Fig. 1 and Fig. 2.

matplotlib is an optional extra (`pip install keras-eql[plot]`), imported
inside the functions. Figures are built as `matplotlib.figure.Figure` on an
Agg canvas, never through pyplot: no global state, no display needed, safe
to call from a training callback. Every figure takes `figsize` (inches) and
`dpi`, and lays itself out so that no text is clipped and no two tick labels
overlap, from 2 to thousands of classes.
"""

import csv
import io
import math

import numpy as np

from keras_eql.metrics import _check_counts, _group_ids, _group_order, class_groups

STATISTICS_PANELS = (
    # (key, panel title, y-axis label)
    ("positive", "accumulated positive gradient", "Σ |∂L/∂z| over positives"),
    ("negative", "accumulated negative gradient", "Σ |∂L/∂z| over negatives"),
    ("ratio", "positive / negative ratio", "positive / negative"),
)
PANELS = tuple(key for key, _, _ in STATISTICS_PANELS)
# Panel titles for panels too narrow for the full ones.
SHORT_PANEL_TITLES = {"positive": "positive gradient", "negative": "negative gradient", "ratio": "ratio"}
# A panel switches to a log axis when its values span this many times.
LOG_SCALE_SPAN = 100.0
# Bars (with gaps) while each bar gets at least this many pixels; a filled
# step profile below, where gaps could not be seen anyway.
MIN_BAR_PIXELS = 3.0
SERIES_COLORS = ("tab:blue", "tab:orange")
# Font sizes in points.
TITLE_SIZE, PANEL_TITLE_SIZE, LABEL_SIZE, TICK_SIZE, GROUP_SIZE = 11.0, 10.0, 9.0, 8.0, 8.0
# The y tick labels change with the statistics while the layout is kept: it
# starts with room for labels this wide and is redone when they outgrow it.
INITIAL_Y_TICK = "0.88"
TICK_LENGTH, TICK_PAD, PAD = 3.0, 2.0, 4.0  # points


def _new_figure(width, height, dpi, **kwargs):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("keras_eql.plotting needs matplotlib: pip install 'keras-eql[plot]'.") from error
    figure = Figure(figsize=(width, height), dpi=dpi, **kwargs)
    FigureCanvasAgg(figure)
    return figure


def _check_size(label, figsize, dpi):
    try:
        width, height = (float(value) for value in figsize)
        dpi = float(dpi)
    except (TypeError, ValueError):
        width = height = dpi = math.nan
    if not all(math.isfinite(value) and value > 0 for value in (width, height, dpi)):
        raise ValueError(f"{label}: figsize must be two positive inches and dpi a positive number, "
                         f"got figsize={figsize!r}, dpi={dpi!r}.")
    return (width, height), dpi


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


def _as_statistics(stats_or_loss, argument="stats_or_loss"):
    if hasattr(stats_or_loss, "gradient_statistics"):
        stats_or_loss = stats_or_loss.gradient_statistics()
    if not isinstance(stats_or_loss, dict) or not {"positive", "negative", "ratio"} <= set(stats_or_loss):
        raise ValueError(
            f"plot_gradient_statistics: {argument} must be a keras_eql loss or a dict with "
            f"'positive', 'negative' and 'ratio', got {stats_or_loss!r:.200}.")
    stats = {key: np.asarray(stats_or_loss[key], np.float64) for key, _, _ in STATISTICS_PANELS}
    shapes = {key: value.shape for key, value in stats.items()}
    if len(set(shapes.values())) != 1 or stats["ratio"].ndim != 1 or stats["ratio"].size == 0:
        raise ValueError(
            f"plot_gradient_statistics: {argument} must hold three equal 1-D non-empty arrays, "
            f"got shapes {shapes}.")
    return stats


def _series_label(stats_or_loss, default):
    return str(getattr(stats_or_loss, "name", None) or default)


def _steps(stats_or_loss):
    """Training steps folded into a loss's statistics, or None for a dict."""
    statistics = getattr(stats_or_loss, "statistics", None)
    steps = getattr(statistics, "steps", None)
    return None if steps is None else int(np.asarray(steps))


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


def _count_text(count):
    return str(int(count)) if float(count).is_integer() else _short_number(count)


class _Bars:
    """One series of a panel: bars with gaps, or a step profile when classes are dense."""

    def __init__(self, axis, num_classes, slot, slots, color, dense):
        from matplotlib.collections import PolyCollection
        from matplotlib.patches import StepPatch

        self.edges = np.arange(num_classes + 1, dtype=np.float64)
        if dense:
            self.artist = StepPatch(np.zeros(num_classes), self.edges, baseline=0.0, fill=slot == 0,
                                    color=color, alpha=0.85 if slot == 0 else 1.0,
                                    linewidth=0.0 if slot == 0 else 0.9)
            axis.add_patch(self.artist)
        else:  # class k spans [k, k + 1]: bars fill 80% of it, side by side, the rest is the gap
            width = 0.8 / slots
            self.left = self.edges[:-1] + 0.1 + slot * width
            self.right = self.left + width
            self.artist = PolyCollection([], facecolors=color, edgecolors="none", linewidths=0.0)
            axis.add_collection(self.artist, autolim=False)
        self.dense = dense

    def set_values(self, values, bottom):
        if self.dense:
            self.artist.set_data(values, self.edges, bottom)
            return
        low = np.full_like(values, bottom)
        self.artist.set_verts(np.stack([
            np.stack([self.left, low], -1), np.stack([self.left, values], -1),
            np.stack([self.right, values], -1), np.stack([self.right, low], -1)], axis=1))


class StatisticsFigure:
    """The three-panel figure, built once and redrawn cheaply with new statistics.

    Building the axes costs more than drawing them, so a caller that plots
    repeatedly (`GradientStatisticsLogger`, every epoch) keeps one instance.
    `rgba` renders the parts that do not change with the statistics (panel
    titles, class axes, groups, legend) once, keeps those pixels, and then
    redraws only the bars, spines, y axes and title on top of them: text
    rendering and layout are most of matplotlib's cost, and the class axes
    hold most of the text. The layout is computed in pixels whenever the
    classes, their order, names, groups or series change, or the y tick
    labels outgrow the room it left them.

    Args:
        figsize: `(width, height)` in inches.
        dpi: pixels per inch.
        panels: which panels to draw, in order: some of `"positive"`,
            `"negative"` and `"ratio"`.

    Example:
        >>> panels = StatisticsFigure(figsize=(9.6, 3.0), dpi=100)
        >>> figure = panels.update({"positive": [1.0, 2.0], "negative": [4.0, 4.0],
        ...                         "ratio": [0.25, 0.5]})
        >>> panels.rgba().shape
        (300, 960, 4)
    """

    def __init__(self, figsize=(12.0, 4.0), dpi=100, panels=PANELS):
        figsize, dpi = _check_size("StatisticsFigure", figsize, dpi)
        panels = (panels,) if isinstance(panels, str) else tuple(panels)
        if not panels or len(set(panels)) != len(panels) or not set(panels) <= set(PANELS):
            raise ValueError(f"plot_gradient_statistics: panels must be some of {list(PANELS)}, "
                             f"each once, got {panels!r}.")
        self.figure = _new_figure(*figsize, dpi)  # first: it explains a missing matplotlib
        from matplotlib.ticker import FuncFormatter, NullFormatter

        self._panels = panels
        self._axes = list(np.atleast_1d(self.figure.subplots(1, len(panels))))
        self._tick_formatter = FuncFormatter(_short_number)
        for axis, (_, title, ylabel) in zip(self._axes, (p for key in panels for p in STATISTICS_PANELS
                                                           if p[0] == key)):
            axis.set_title(title, fontsize=PANEL_TITLE_SIZE)
            axis.set_ylabel(ylabel, fontsize=LABEL_SIZE)
            axis.yaxis.set_major_formatter(self._tick_formatter)
            axis.yaxis.set_minor_formatter(NullFormatter())
            axis.tick_params(labelsize=TICK_SIZE, length=TICK_LENGTH, pad=TICK_PAD)
            axis.grid(axis="y", color="0.9", linewidth=0.6)
            axis.set_axisbelow(True)
            axis.margins(x=0.0)
        self._title = self.figure.text(0.0, 1.0, "", ha="left", va="top", fontsize=TITLE_SIZE)
        self._bars = []  # per panel, one `_Bars` per series
        self._y_tick_room = None  # pixels the layout leaves for y tick labels
        self._static = []  # artists of the last layout, removed on the next one
        self._layout_key = None  # what the kept layout shows
        self._background = None  # pixels of everything but `_changing_artists`
        self._background_size = None

    def update(self, stats_or_loss, class_counts=None, *, class_names=None, baseline=None,
               groups=None, label=None, baseline_label=None, title=None):
        """Redraws the panels with new statistics.

        Args:
            stats_or_loss: a keras_eql loss, or a dict like its
                `gradient_statistics()`.
            class_counts: optional training samples per class: the x order
                (most frequent first) and the tick labels.
            class_names: optional class names for the tick labels.
            baseline: optional second statistics (a loss or a dict, e.g.
                cross-entropy's from `SoftmaxEQL(tau=0)`), drawn beside.
            groups: optional grouping of the classes, shaded and named
                above the panels, classes sorted by group first: `"thirds"`,
                `"shots"`, `"lvis"`, a mapping `{name: [class ids]}` or one
                label per class (see `keras_eql.metrics.class_groups`).
            label: legend name of `stats_or_loss` (default: the loss's name).
            baseline_label: legend name of `baseline`.
            title: figure title (default: the loss name and training steps).

        Returns:
            The updated `matplotlib.figure.Figure`.
        """
        stats = _as_statistics(stats_or_loss)
        num_classes = stats["ratio"].size
        series, labels = [stats], [label or _series_label(stats_or_loss, "statistics")]
        if baseline is not None:
            series.append(_as_statistics(baseline, "baseline"))
            labels.append(baseline_label or _series_label(baseline, "baseline"))
            if series[1]["ratio"].size != num_classes:
                raise ValueError(
                    f"plot_gradient_statistics: the baseline has {series[1]['ratio'].size} classes, "
                    f"the statistics {num_classes}.")
        counts = None
        if class_counts is not None:
            counts = _check_counts("plot_gradient_statistics: class_counts", class_counts)
            if counts.size != num_classes:
                raise ValueError(
                    f"plot_gradient_statistics: class_counts has {counts.size} entries, "
                    f"the statistics have {num_classes} classes.")
        if class_names is not None and (isinstance(class_names, str) or len(class_names) != num_classes):
            raise ValueError(
                f"plot_gradient_statistics: class_names must list {num_classes} names, "
                f"got {class_names!r:.200}.")
        sorted_by = "training count" if counts is not None else "positives seen"
        frequency = counts if counts is not None else stats["positive"]
        order = np.lexsort((np.arange(num_classes), -frequency))
        resolved = None
        if groups is not None:
            resolved = class_groups(groups, counts, num_classes=num_classes, rank_by=stats["positive"],
                                    label="plot_gradient_statistics")
            group_ids = _group_ids(resolved, num_classes)
            group_ids = np.where(group_ids < 0, num_classes, group_ids)  # classes in no group last
            by_group = np.lexsort((np.arange(num_classes), -frequency, group_ids))
            if not np.array_equal(by_group, order):  # groups that do not follow the frequency
                order, sorted_by = by_group, "group, then " + sorted_by

        names = None if class_names is None else tuple(str(name) for name in class_names)
        layout_key = (tuple(order.tolist()), names, None if counts is None else tuple(counts.tolist()),
                      None if resolved is None else tuple((k, tuple(v)) for k, v in resolved.items()),
                      tuple(labels), sorted_by, tuple(self.figure.bbox.size), title != "")
        if title is None:
            steps = _steps(stats_or_loss)
            title = " vs ".join(labels) + ": gradient statistics" + (
                "" if steps is None else f" after {steps:,} training steps")
        self._title.set_text(title)
        renderer = self.figure.canvas.get_renderer()
        if layout_key != self._layout_key:
            self._lay_out(order, names, counts, resolved, labels, sorted_by)
            self._layout_key, self._background = layout_key, None
        self._set_values(series, order, renderer)
        widest = max(self._y_tick_widths(axis, renderer) for axis in self._axes)
        if widest > self._y_tick_room:  # wider y tick labels than the layout has room for
            self._y_tick_room = max(widest, 1.25 * self._y_tick_room)  # grow in steps: few re-layouts
            self._lay_out(order, names, counts, resolved, labels, sorted_by)
            self._background = None
            self._set_values(series, order, renderer)
        self._fit_title(renderer)
        return self.figure

    def _set_values(self, series, order, renderer):
        """Bars, y scales and limits, and y label positions for new statistics."""
        from matplotlib.ticker import NullFormatter

        for axis, bars, key in zip(self._axes, self._bars, self._panels):
            columns = [values[key][order] for values in series]
            everything = np.concatenate(columns)
            log_bottom = _log_baseline(everything)
            scale = "linear" if log_bottom is None else "log"
            bottom = 0.0 if log_bottom is None else log_bottom
            finite = everything[np.isfinite(everything)]
            top = finite.max() if finite.size else 0.0
            limits = (0.0, top * 1.05 if top > 0 else 1.0) if log_bottom is None else (bottom, top * 1.6)
            if axis.get_yscale() != scale:  # a new scale brings new default ticks
                if scale == "log":  # positive limits first: a log axis ignores others
                    axis.set_ylim(*limits)
                axis.set_yscale(scale)
                axis.yaxis.set_major_formatter(self._tick_formatter)
                axis.yaxis.set_minor_formatter(NullFormatter())
            axis.set_ylim(*limits)
            for artist, values in zip(bars, columns):
                artist.set_values(values, bottom)
            room = (TICK_LENGTH + TICK_PAD + PAD) * self.figure.dpi / 72.0 + self._y_tick_widths(axis, renderer)
            axis.yaxis.set_label_coords(-room / self._panel_width, 0.5)  # the label's right edge: by the ticks

    def _fit_title(self, renderer):
        """Shrinks a title wider than the room the layout left it (at least 6 points)."""
        room = self.figure.bbox.width - 2 * PAD * self.figure.dpi / 72.0
        if self._legend_in_title_row:
            room -= self._legend_width + 2 * PAD * self.figure.dpi / 72.0
        self._title.set_fontsize(TITLE_SIZE)
        width = self._text_size(renderer, self._title.get_text(), TITLE_SIZE)[0]
        if width > room:
            self._title.set_fontsize(max(6.0, TITLE_SIZE * room / width))

    def _y_tick_widths(self, axis, renderer):
        """Width in pixels of the widest y tick label the axis will draw."""
        low, high = sorted(axis.get_ylim())
        ticks = [tick for tick in axis.yaxis.get_majorticklocs() if low <= tick <= high]
        return max((self._text_size(renderer, _short_number(tick), TICK_SIZE)[0] for tick in ticks), default=0.0)

    # -- layout ----------------------------------------------------------------
    def _text_size(self, renderer, text, size, rotation=0):
        """`(width, height)` in pixels of a text as it would be drawn."""
        from matplotlib.text import Text

        artist = Text(0.0, 0.0, text, fontsize=size, rotation=rotation)
        artist.set_figure(self.figure)
        extent = artist.get_window_extent(renderer)
        return extent.width, extent.height

    def _class_ticks(self, renderer, order, names, counts, spacing, max_height):
        """Tick positions, labels, rotation and what the labels show, for one panel.

        Every class gets a label while one fits beside the next, horizontal or
        else rotated (no taller than `max_height`): its name or id with its
        training count, or without the count if that is what it takes. Beyond
        that, every `step`-th rank is labelled with its count (or the rank).
        """
        num_classes = order.size
        px = self.figure.dpi / 72.0
        positions = np.arange(num_classes) + 0.5
        if num_classes <= 200:
            plain = [names[i] if names is not None else str(i) for i in order]
            candidates = [(plain, "class")]
            if counts is not None:
                counted = [f"{text} ({_count_text(counts[i])})" for text, i in zip(plain, order)]
                candidates.insert(0, (counted, "class (training count)"))
            for texts, shows in candidates:
                sizes = [self._text_size(renderer, text, TICK_SIZE) for text in texts]
                widest, tallest = max(w for w, _ in sizes), max(h for _, h in sizes)
                if widest + 2 * px <= spacing and tallest <= max_height:
                    return positions, texts, 0, shows
                if tallest + 1 * px <= spacing and widest <= max_height:
                    return positions, texts, 90, shows
        if counts is not None:
            ranked, shows = [_count_text(counts[i]) for i in order], "training count"
        else:
            ranked, shows = [str(rank) for rank in range(num_classes)], "rank"
        widest = max(self._text_size(renderer, text, TICK_SIZE)[0] for text in {max(ranked, key=len), ranked[0]})
        needed = (widest + 6 * px) / spacing
        step = next(m * 10 ** e for e in range(12) for m in (1, 2, 5) if m * 10 ** e >= needed)
        ranks = np.arange(0, num_classes, step)
        return ranks + 0.5, [ranked[rank] for rank in ranks], 0, shows

    def _lay_out(self, order, names, counts, groups, labels, sorted_by):
        """Builds the series artists, class axes, groups and legend, and places the panels."""
        from matplotlib.patches import Patch

        for artist in self._static:
            artist.remove()
        self._static = []
        for bars in self._bars:
            for series in bars:
                series.artist.remove()
        canvas = self.figure.canvas
        renderer = canvas.get_renderer()
        num_classes = order.size
        width, height = self.figure.bbox.width, self.figure.bbox.height
        px = self.figure.dpi / 72.0
        pad, tick_room = PAD * px, (TICK_LENGTH + TICK_PAD) * px
        line = {size: self._text_size(renderer, "Ag", size)[1] for size in
                (TITLE_SIZE, PANEL_TITLE_SIZE, LABEL_SIZE, GROUP_SIZE)}

        # Columns: [y label, y ticks, panel] per panel, with gaps, in pixels.
        count = len(self._panels)
        if self._y_tick_room is None:
            self._y_tick_room = self._text_size(renderer, INITIAL_Y_TICK, TICK_SIZE)[0]
        y_ticks = tick_room + self._y_tick_room + pad
        left = pad + line[LABEL_SIZE] + y_ticks
        gap, right = 2 * pad, 3 * pad
        panel_width = (width - count * left - (count - 1) * gap - right) / count
        if panel_width < 40:
            raise ValueError(
                f"plot_gradient_statistics: a figure of {width:.0f} x {height:.0f} pixels is too "
                f"narrow for {count} panels; raise figsize or dpi.")
        spacing = panel_width / num_classes
        positions, texts, rotation, shows = self._class_ticks(
            renderer, order, names, counts, spacing, max_height=0.3 * height)
        tick_heights = [self._text_size(renderer, text, TICK_SIZE, rotation)[1] for text in texts]
        extra = {"class": "", "rank": " · ticks: rank", "training count": " · ticks: count",
                 "class (training count)": " · (n): count"}[shows]
        room = width - left - right
        short = {"class": "classes, most frequent first", "rank": "classes; ticks: rank",
                 "training count": "classes; ticks: training count",
                 "class (training count)": "classes (training count)"}[shows]
        candidates = (f"classes by {sorted_by}, most first{extra}", f"classes, most frequent first{extra}",
                      short, "classes")  # the longest that fits
        xlabel = next(text for text in candidates
                      if text == candidates[-1] or self._text_size(renderer, text, LABEL_SIZE)[0] <= room)

        # Rows: title (and legend), group names, panel titles, panel, ticks, x label.
        dense = spacing < MIN_BAR_PIXELS * len(labels)
        handles = [Patch(color=color, label=name) for color, name in zip(SERIES_COLORS, labels)]
        legend = None
        title_row = pad + line[TITLE_SIZE] + 2 * pad if self._title.get_text() else pad
        self._legend_in_title_row, self._legend_width = False, 0.0
        if len(labels) > 1:
            legend = self.figure.legend(handles=handles, loc="upper right", ncols=len(labels),
                                        fontsize=LABEL_SIZE, frameon=False, borderaxespad=0.0,
                                        handlelength=1.2, columnspacing=1.2)
            self._static.append(legend)
            legend_width, legend_height = (legend.get_window_extent(renderer).size)
            title_width = self._text_size(renderer, self._title.get_text() + "0000", TITLE_SIZE)[0]
            legend_top = pad
            self._legend_in_title_row, self._legend_width = True, legend_width
            if title_width + legend_width + 2 * pad > width - 2 * pad:  # a row of its own
                legend_top = title_row
                title_row += legend_height + pad
                self._legend_in_title_row = False
            legend.set_bbox_to_anchor(((width - pad) / width, 1 - legend_top / height),
                                      transform=self.figure.transFigure)
        group_row = line[GROUP_SIZE] + pad if groups else 0.0
        top = title_row + group_row + line[PANEL_TITLE_SIZE] + pad
        bottom = pad + line[LABEL_SIZE] + pad + max(tick_heights) + tick_room
        panel_height = height - top - bottom
        if panel_height < 30:
            raise ValueError(
                f"plot_gradient_statistics: a figure of {width:.0f} x {height:.0f} pixels is too "
                "short for its titles and tick labels; raise figsize or dpi.")
        self._title.set_position((pad / width, 1 - pad / height))
        self._static.append(self.figure.text(
            (left + (width - left - right) / 2) / width, pad / height, xlabel,
            ha="center", va="bottom", fontsize=LABEL_SIZE))

        spans = []
        if groups:
            ids = _group_ids(groups, num_classes)[order]
            for index, name in enumerate(groups):
                members = np.flatnonzero(ids == index)
                if members.size:
                    spans.append((name, members[0], members[-1] + 1))
        self._bars, self._panel_width = [], panel_width
        for index, axis in enumerate(self._axes):
            x0 = left + index * (panel_width + gap + left)
            key = self._panels[index]
            title = dict((key, title) for key, title, _ in STATISTICS_PANELS)[key]
            axis.set_position([x0 / width, bottom / height, panel_width / width, panel_height / height])
            axis.set_xlim(0, num_classes)
            axis.set_xticks(positions, texts, rotation=rotation, fontsize=TICK_SIZE,
                            ha="center", va="top", rotation_mode="default")
            if self._text_size(renderer, title, PANEL_TITLE_SIZE)[0] > panel_width:
                title = SHORT_PANEL_TITLES[key]
            axis.set_title(title, fontsize=PANEL_TITLE_SIZE, pad=0,
                           y=1.0 + (group_row + pad) / panel_height)  # a fixed y: no measuring per draw
            self._bars.append([_Bars(axis, num_classes, slot, len(labels), color, dense)
                               for slot, color in enumerate(SERIES_COLORS[:len(labels)])])
            self._static += self._group_marks(axis, renderer, spans, panel_width / num_classes)

    def _group_marks(self, axis, renderer, spans, class_width):
        """Alternate shading of the groups and their names above a panel."""
        marks, last_end = [], -math.inf
        for number, (name, start, end) in enumerate(spans):
            if number % 2:
                marks.append(axis.axvspan(start, end, color="0.93", linewidth=0, zorder=0))
            room = (end - start) * class_width
            center = (start + end) / 2 * class_width
            for text in (name, name[:1]):
                text_width = self._text_size(renderer, text, GROUP_SIZE)[0]
                if text_width <= room + 2 and center - text_width / 2 >= last_end:
                    marks.append(axis.annotate(
                        text, xy=((start + end) / 2, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                        fontsize=GROUP_SIZE, color="0.35"))
                    last_end = center + text_width / 2 + 2
                    break
        return marks

    def _changing_artists(self):
        """What the statistics change, in the order a full draw draws them."""
        artists = []
        for axis, bars in zip(self._axes, self._bars):
            artists += [axis.yaxis, *(series.artist for series in bars), *axis.spines.values()]
        return artists + [self._title]

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


def plot_gradient_statistics(stats_or_loss, class_counts=None, *, class_names=None, baseline=None,
                             groups=None, label=None, baseline_label=None, title=None,
                             panels=PANELS, figsize=(12.0, 4.0), dpi=100):
    """Three panels, positive, negative and ratio, per class (Tan et al., Fig. 1).

    Classes run along the x axis from the most to the least frequent: by
    `class_counts` when given, else by accumulated positive gradient (the
    positives seen); with `groups`, group by group. Each class is a bar (two
    side by side with a `baseline`); with more classes than the panel has
    room for bars, a filled step profile. Every class gets a tick label
    (its name or id, and its count) while they fit; beyond that, ticks are
    thinned and show the training count (or the rank) at their position. A
    panel is log-scaled when its values are all positive and span two orders
    of magnitude or more.

    Args:
        stats_or_loss: a keras_eql loss, or a dict like its
            `gradient_statistics()` (`positive`, `negative`, `ratio`).
        class_counts: optional training samples per class.
        class_names: optional names, used as tick labels.
        baseline: optional second statistics (loss or dict) drawn beside, e.g.
            cross-entropy's: `SoftmaxEQL(tau=0)` is cross-entropy with statistics.
        groups: optional grouping to shade and name: `"thirds"` (head /
            medium / tail), `"shots"` (many / medium / few), `"lvis"` (frequent
            / common / rare), a mapping `{name: [class ids]}` or one label per
            class; see `keras_eql.metrics.class_groups`.
        label: legend name of `stats_or_loss` (default: the loss's name).
        baseline_label: legend name of `baseline` (default: its name).
        title: figure title (default: names and training steps; `""` for none).
        panels: which panels to draw, in order: some of `"positive"`,
            `"negative"` and `"ratio"` (e.g. `["ratio"]`).
        figsize: `(width, height)` in inches.
        dpi: pixels per inch.

    Returns:
        A `matplotlib.figure.Figure`, 1200 x 400 pixels by default.

    Example:
        >>> figure = plot_gradient_statistics(
        ...     {"positive": [30.0, 3.0, 0.3], "negative": [60.0, 90.0, 99.0],
        ...      "ratio": [0.5, 0.03, 0.003]}, class_counts=[500, 50, 5],
        ...     baseline={"positive": [30.0, 3.0, 0.3], "negative": [40.0, 30.0, 20.0],
        ...               "ratio": [0.75, 0.1, 0.015]}, groups="shots")
        >>> [axis.get_title() for axis in figure.axes][2]
        'positive / negative ratio'
        >>> figure.axes[0].get_xticklabels()[2].get_text()
        '2 (5)'
    """
    (width, height), dpi = _check_size("plot_gradient_statistics", figsize, dpi)
    return StatisticsFigure(figsize=(width, height), dpi=dpi, panels=panels).update(
        stats_or_loss, class_counts, class_names=class_names, baseline=baseline, groups=groups,
        label=label, baseline_label=baseline_label, title=title)


# -- Fig. 2 --------------------------------------------------------------------
def _read_history(csv_path):
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:  # files written before the column was renamed from `loss`
        if "output" not in row and "loss" in row:
            row["output"] = row["loss"]
    required = {"step", "output", "class", "class_name", "group", "ratio"}
    if not rows or not required <= set(rows[0]):
        raise ValueError(
            f"plot_ratio_history: {csv_path!r} is empty or lacks columns "
            f"{sorted(required - set(rows[0] if rows else ()))}; expected a "
            "GradientStatisticsLogger CSV.")
    return rows


def _class_index(latest, wanted, output):
    """The one class index whose id or name is `wanted`."""
    matches = {c for (_, c), row in latest.items() if str(wanted) in (row["class"], row["class_name"])}
    if len(matches) != 1:
        raise ValueError(f"plot_ratio_history: class {wanted!r} matches {len(matches)} classes of {output!r}.")
    return matches.pop()


def plot_ratio_history(csv_path, *, output=None, classes=None, groups=None, title=None,
                       figsize=(8.0, 4.5), dpi=100):
    """Ratio against training step (Tan et al., Fig. 2).

    Reads a `GradientStatisticsLogger` CSV and draws one line per selected
    class and one per group (the mean ratio of the group's classes at each
    step). Repeated rows of a step and class keep the last value.

    Args:
        csv_path: path of the CSV written by `GradientStatisticsLogger`.
        output: which loss to plot, by the CSV's `output` column (the output
            name, or the loss name in a one-output model); may be omitted if
            the file holds one.
        classes: class indices or names to draw individually.
        groups: the groups whose mean to draw. None: the CSV's `group` column
            (the logger's groups) unless `classes` is given; a mapping
            `{name: [class ids or names]}` (e.g. only `{"tail": [7, 8, 9]}`);
            or one group label per class (e.g. LVIS's `"r"`, `"c"`, `"f"`).
        title: axes title (default: the output and what is drawn).
        figsize: `(width, height)` in inches.
        dpi: pixels per inch.

    Returns:
        A `matplotlib.figure.Figure`, 800 x 450 pixels by default.

    Example:
        >>> import os, tempfile, keras, keras_eql, numpy as np
        >>> from keras_eql.callbacks import GradientStatisticsLogger
        >>> path = os.path.join(tempfile.mkdtemp(), "ratios.csv")
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> model.compile("sgd", loss=keras_eql.SoftmaxEQL())
        >>> _ = model.fit(np.ones((8, 4)), np.arange(8) % 3, epochs=2, verbose=0,
        ...               callbacks=[GradientStatisticsLogger(csv_path=path)])
        >>> figure = plot_ratio_history(path, classes=[0], groups={"tail": [2]})
        >>> [text.get_text() for text in figure.legends[0].get_texts()]
        ['class 0', 'tail (mean)']
    """
    (width, height), dpi = _check_size("plot_ratio_history", figsize, dpi)
    rows = _read_history(csv_path)
    outputs = sorted({row["output"] for row in rows})
    if output is None and len(outputs) > 1:
        raise ValueError(
            f"plot_ratio_history: {csv_path!r} holds outputs {outputs}; pick one with `output`.")
    output = outputs[0] if output is None else output
    if output not in outputs:
        raise ValueError(f"plot_ratio_history: no output {output!r} in {csv_path!r}; it holds {outputs}.")
    latest = {(int(row["step"]), int(row["class"])): row for row in rows if row["output"] == output}
    num_classes = max(c for _, c in latest) + 1
    ratios = {}  # class -> [(step, ratio)]
    for (step, index), row in sorted(latest.items()):
        ratios.setdefault(index, []).append((step, float(row["ratio"])))

    lines = []
    for wanted in [] if classes is None else classes:
        lines.append((f"class {wanted}", ratios[_class_index(latest, wanted, output)]))

    if groups is None and classes is None:  # the logger's groups, step by step (they may move)
        by_group = {}
        for (step, _), row in sorted(latest.items()):
            if row["group"]:
                by_group.setdefault(row["group"], {}).setdefault(step, []).append(float(row["ratio"]))
        for name in _group_order(list(by_group)):
            lines.append((f"{name} (mean)", [(step, float(np.mean(r))) for step, r in by_group[name].items()]))
        members = {}
    elif isinstance(groups, dict):
        members = {name: [_class_index(latest, wanted, output) for wanted in
                          ([ids] if isinstance(ids, (int, str)) else ids)] for name, ids in groups.items()}
        members = class_groups(members, num_classes=num_classes, label="plot_ratio_history")
    elif groups is not None:
        members = class_groups(groups, num_classes=num_classes, label="plot_ratio_history")
    else:
        members = {}
    for name, indices in members.items():
        if not indices:
            continue
        by_step = {}
        for index in indices:
            for step, ratio in ratios.get(index, []):
                by_step.setdefault(step, []).append(ratio)
        lines.append((f"{name} (mean)", sorted((step, float(np.mean(r))) for step, r in by_step.items())))
    if not lines:
        raise ValueError("plot_ratio_history: nothing to draw; pass `classes` or `groups`.")

    figure = _new_figure(width, height, dpi, layout="constrained")
    axis = figure.add_subplot()
    for label, series in lines:
        steps, values = zip(*series)
        axis.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=label)
    if _log_baseline(np.asarray([ratio for _, series in lines for _, ratio in series])) is not None:
        axis.set_yscale("log")
    axis.tick_params(labelsize=TICK_SIZE)
    axis.grid(color="0.9", linewidth=0.6)
    axis.set_axisbelow(True)
    axis.set_xlabel("training step (optimizer iterations)", fontsize=LABEL_SIZE)
    axis.set_ylabel("positive / negative gradient ratio", fontsize=LABEL_SIZE)
    shown = "classes and groups" if classes and len(lines) > len(classes) else (
        "classes" if classes else "group means")
    axis.set_title(title or f"{output}: gradient ratio during training, {shown}", fontsize=TITLE_SIZE)
    figure.legend(loc="outside right upper", fontsize=LABEL_SIZE, frameon=False)
    return figure
