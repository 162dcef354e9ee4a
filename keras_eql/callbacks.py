"""`GradientStatisticsLogger`: watch the per-class gradient statistics train.

The callback only reads the loss's statistics variables at logging points
(epoch ends, and every N steps when asked), never inside a training step, so
it works unchanged with `jit_compile=True` and adds no work to the step.

Backends: CSV, `logs` and the figures need no TensorFlow (under JAX the
statistics are read after the trainer synced its state back into the
model, which reading `Callback.model` does). TensorBoard output (`log_dir`)
writes through `tf.summary`, as Keras's own `TensorBoard` callback does on
every backend, so it needs TensorFlow installed.
"""

import csv
import numbers
import os
import warnings

import keras
import numpy as np

from keras_eql import _saving
from keras_eql._model_losses import equalization_losses
from keras_eql.metrics import _check_counts, _group_ids, class_groups

# `output`: the name of the loss's output (the loss's own name in a model with one output).
CSV_COLUMNS = ("epoch", "step", "output", "class", "class_name", "group", "positive", "negative", "ratio")
# TensorBoard scales every image into its card, about 320 x 210 pixels: one
# image per panel, of the card's shape, with large text for its size, drawn
# at 1.7 times the card's resolution so that the text survives the scaling
# (and "show actual image size" shows it large and sharp).
IMAGE_FIGSIZE, IMAGE_DPI = (3.0, 2.0), 180
IMAGE_PANELS = ("positive", "negative", "ratio")


def _tensorflow():
    """TensorFlow, for the TensorBoard summaries; an ImportError saying what to install."""
    try:
        import tensorflow as tf
    except ImportError as error:
        raise ImportError(
            "GradientStatisticsLogger: log_dir (TensorBoard output) writes through "
            "tf.summary, as Keras's own TensorBoard callback does, and needs TensorFlow: "
            "`pip install tensorflow-cpu` (or `tensorflow`), or pass log_dir=None and keep "
            f"csv_path and the figures, which need no TensorFlow ({error}).") from None
    return tf


def _summary_function(tag, group_names):
    """The group scalars of one loss as one traced graph.

    Eagerly, each `tf.summary.scalar` dispatches several small ops; one graph
    call per logging point costs a fraction of that.
    """
    tf = _tensorflow()

    @tf.function
    def write(step, group_means):
        for index, name in enumerate(group_names):
            tf.summary.scalar(f"{tag}/ratio_mean/{name}", group_means[index], step=step)

    return write


def _image_summary_function(tag):
    """The image summary of one loss as one traced graph.

    Eagerly, `tf.summary.image` dispatches a dozen small ops around the PNG
    encoding; traced, the encoding is most of what is left.
    """
    tf = _tensorflow()

    @tf.function(input_signature=[tf.TensorSpec([], tf.int64), tf.TensorSpec([None, None, None, 4], tf.uint8)])
    def write(step, pixels):  # one image per panel
        for index, panel in enumerate(IMAGE_PANELS):
            tf.summary.image(f"{tag}/gradient_statistics/{panel}", pixels[index:index + 1, ..., :3],
                             step=step)  # opaque: RGB

    return write


class GradientStatisticsLogger(keras.callbacks.Callback):
    """Logs the per-class gradient statistics of every keras_eql loss.

    At each epoch end, and every `every_n_steps` training steps when given,
    for each keras_eql loss of the compiled model, named as
    `keras_eql.gradient_statistics(model)` names it (the output's name when
    the model has several outputs, e.g. `cls`; the loss's name, e.g.
    `softmax_eql`, when it has one; called `<name>` below):

    * TensorBoard (`log_dir`), in `<log_dir>/train` next to Keras's own
      TensorBoard callback's training logs: scalars
      `<name>/ratio_mean/<group>` (the mean ratio of each group's classes),
      and at epoch ends only, the three panels of `plot_gradient_statistics`
      as images `<name>/gradient_statistics/{positive,negative,ratio}`, each
      drawn for a TensorBoard card so that it reads there without zooming
      (needs matplotlib; skipped with a warning without it). The step is `model.optimizer.iterations`, as in Keras's
      TensorBoard callback with `update_freq` in batches. There is no
      per-class histogram: a histogram of per-class values loses which class
      is which; the image and the CSV keep it.
    * CSV (`csv_path`): one row per class with the columns `CSV_COLUMNS`
      (`output` is `<name>`), appended (the header is written when the file
      is new).
    * `logs`: `<name>_ratio_<group>` at epoch ends, shown by the progress bar
      and kept in `History`.

    Bad labels: under `jit_compile=True` a step with a label or dense target
    the loss does not accept cannot raise (its loss is NaN and it changes
    nothing, see `EqualizationLoss.bad_label`). At every logging point and
    when training ends (also after `TerminateOnNaN` stopped it), the logger
    raises a `ValueError` naming the loss, the value and what was expected.

    Groups (`groups`): by default `"thirds"`, head / medium / tail, equal
    thirds by `class_counts` rank, or without counts by the rank of the
    accumulated positive gradient (the positives seen so far). `"shots"`
    gives `GroupedAccuracy`'s many / medium / few (OLTR thresholds, needs
    `class_counts`), `"lvis"` frequent / common / rare (needs per-class
    training image counts); a mapping `{name: [class ids]}` or one label per
    class gives any other grouping (see `keras_eql.metrics.class_groups`).
    A group with no class is left out.

    Args:
        log_dir: TensorBoard log directory, or None.
        csv_path: CSV file to append to, or None.
        every_n_steps: also log every this many training batches, or None.
        class_counts: training samples per class: a sequence for every loss,
            or a dict `{name: sequence}`.
        class_names: names per class, same forms as `class_counts`.
        groups: the grouping for every loss, or a dict `{name: grouping}`
            (a dict whose keys are all loss names is read per loss).
        image_every_n_epochs: write the image every this many epochs, or
            None for no image. Rendering it is most of the callback's cost
            (about 40 ms of CPU per epoch; see BENCHMARKS.md): raise this
            for epochs shorter than about a second.

    Example:
        >>> import keras, keras_eql, numpy as np
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> model.compile("sgd", loss=keras_eql.SoftmaxEQL())
        >>> logger = keras_eql.callbacks.GradientStatisticsLogger(class_counts=[6, 1, 1])
        >>> history = model.fit(np.ones((8, 4)), np.array([0, 0, 0, 0, 0, 0, 1, 2]),
        ...                     verbose=0, callbacks=[logger])
        >>> sorted(key for key in history.history if "ratio" in key)
        ['softmax_eql_ratio_head', 'softmax_eql_ratio_medium', 'softmax_eql_ratio_tail']
    """

    def __init__(self, log_dir=None, csv_path=None, every_n_steps=None, class_counts=None,
                 class_names=None, groups=None, image_every_n_epochs=1):
        super().__init__()
        for label, value in (("every_n_steps", every_n_steps),
                             ("image_every_n_epochs", image_every_n_epochs)):
            if value is not None and (
                    isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
                raise ValueError(
                    f"GradientStatisticsLogger: {label} must be a positive int or None, "
                    f"got {value!r}.")
        for label, value in (("log_dir", log_dir), ("csv_path", csv_path)):
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise ValueError(f"GradientStatisticsLogger: {label} must be a path or None, got {value!r}.")
        if log_dir is not None:
            _tensorflow()  # fail here, not at the first epoch's end
        self.log_dir = log_dir
        self.csv_path = csv_path
        self.every_n_steps = None if every_n_steps is None else int(every_n_steps)
        self.class_counts = class_counts
        self.class_names = class_names
        self.groups = "thirds" if groups is None else groups
        self.image_every_n_epochs = image_every_n_epochs
        self._losses = {}
        self._warned = set()
        self._writer = None
        self._figures = {}
        self._groups = {}  # name -> resolved groups that do not move with the statistics
        self._summary_functions = {}
        self._csv_checked = False
        self._epoch = 0
        self._epoch_first_step = 0
        self._last_trigger_step = 0
        self._last_written_step = None

    # -- Keras hooks ---------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._losses = equalization_losses(self.model)
        if not self._losses:
            if _saving.overrides_compile(self.model):
                raise ValueError(_saving.dropped_loss_message(self.model, "GradientStatisticsLogger"))
            self._warn_once(
                "no_loss",
                "GradientStatisticsLogger: the model has no keras_eql loss; nothing will be logged.")
            return
        names = list(self._losses)
        for label, value in (("class_counts", self.class_counts), ("class_names", self.class_names)):
            unknown = sorted(set(value) - set(names)) if isinstance(value, dict) else []
            if unknown:
                raise ValueError(
                    f"GradientStatisticsLogger: {label} has keys {unknown} that match no "
                    f"loss; the losses are {names}.")
        self._groups = {}
        for name, loss in self._losses.items():
            if loss.num_classes is not None:
                self._class_info(name, loss.num_classes, np.zeros(loss.num_classes))
        if self.log_dir is not None and self._writer is None:
            self._writer = _tensorflow().summary.create_file_writer(os.path.join(os.fspath(self.log_dir), "train"))
            self._summary_functions = {}  # traced with the writer they write to
        self._last_trigger_step = self._optimizer_step()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self._losses and self.every_n_steps:
            # Read between epochs: the step counter for `every_n_steps` below.
            self._epoch_first_step = self._optimizer_step()

    def on_train_batch_begin(self, batch, logs=None):
        # A batch-*begin* hook: Keras keeps dispatching batch-end callbacks
        # asynchronously, and `logs` (device tensors) are never synced here.
        if not self._losses or not self.every_n_steps:
            return
        completed = self._epoch_first_step + batch
        if completed // self.every_n_steps > self._last_trigger_step // self.every_n_steps:
            self._last_trigger_step = completed
            self._raise_bad_labels()
            self._log(logs=None, with_image=False)

    def on_epoch_end(self, epoch, logs=None):
        if self._losses:
            self._raise_bad_labels()
            every = self.image_every_n_epochs
            self._log(logs=logs, with_image=every is not None and (epoch + 1) % every == 0)
            self._last_trigger_step = self._last_written_step

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._raise_bad_labels()

    def _raise_bad_labels(self):
        """Raise the first bad label a compiled step recorded (read between steps)."""
        if self._losses:
            self.model  # noqa: B018 -- under JAX reading it syncs the step's state back
        for name, loss in self._losses.items():
            value = loss.bad_label()
            if value is None:
                continue
            dense = "0 or 1" if loss._binary_targets else "in [0, 1]"
            if getattr(loss, "targets", "any") == "one_hot":
                dense += (" with at most one positive per row (targets='one_hot'; for a row "
                          "with several, the value is the row's sum)")
            raise ValueError(
                f"{type(loss).__name__} '{name}': a step met the label {value:g}, which this "
                f"loss does not accept: sparse labels must be {loss.expected_labels()}, dense "
                f"targets {dense}. Under jit_compile=True that step could not raise: its loss "
                "was NaN and it moved neither the statistics nor, through this loss, the "
                "weights. Find the batch with keras_eql.validate_labels(loss, labels).")

    # -- logging -------------------------------------------------------------
    def _optimizer_step(self):
        return int(self.model.optimizer.iterations.numpy())

    def _warn_once(self, key, message):
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)

    def _for_loss(self, value, name, per_loss):
        """`value[name]` if `value` is given per loss, else `value`."""
        return value.get(name) if per_loss(value) else value

    def _class_info(self, name, num_classes, positive):
        """Validated `(counts or None, class names, groups)` of a loss's classes."""
        losses = set(self._losses)
        counts = self._for_loss(self.class_counts, name, lambda value: isinstance(value, dict))
        names = self._for_loss(self.class_names, name, lambda value: isinstance(value, dict))
        groups = self._for_loss(self.groups, name, lambda value: isinstance(value, dict) and value
                                and set(value) <= losses)
        if counts is not None:
            counts = _check_counts(f"GradientStatisticsLogger: class_counts of '{name}'", counts)
            if counts.size != num_classes:
                raise ValueError(
                    f"GradientStatisticsLogger: class_counts for '{name}' has {counts.size} "
                    f"entries but the loss has {num_classes} classes.")
        if names is None:
            names = [str(index) for index in range(num_classes)]
        elif isinstance(names, str) or len(names) != num_classes:
            raise ValueError(
                f"GradientStatisticsLogger: class_names for '{name}' must list "
                f"{num_classes} names, got {names!r:.200}.")
        groups = "thirds" if groups is None else groups
        if name in self._groups:
            resolved = self._groups[name]
        else:
            resolved = class_groups(groups, counts, num_classes=num_classes, rank_by=positive,
                                    label=f"GradientStatisticsLogger: groups of '{name}'")
            if not (groups == "thirds" and counts is None):  # else they follow the positives
                self._groups[name] = resolved
        return counts, [str(class_name) for class_name in names], resolved

    def _log(self, logs, with_image):
        # First: under JAX, Keras's `Callback.model` puts the running fit's
        # state (the statistics among it) back into the model's variables,
        # which the trainer otherwise does only at epoch ends.
        step = self._optimizer_step()
        repeated = step == self._last_written_step
        csv_rows = []
        for name, loss in self._losses.items():
            if loss.statistics is None:  # built on the first training call
                continue
            stats = loss.gradient_statistics()
            counts, class_names, groups = self._class_info(name, loss.num_classes, stats["positive"])
            means = {group: float(np.mean(stats["ratio"][members]))
                     for group, members in groups.items() if members}
            if logs is not None:
                logs.update({f"{name}_ratio_{group}": mean for group, mean in means.items()})
            if not repeated:  # nothing has trained since the last write
                group_of = _group_ids(groups, loss.num_classes)
                group_names = list(groups)
                csv_rows += [
                    (self._epoch, step, name, index, class_names[index],
                     group_names[group_of[index]] if group_of[index] >= 0 else "",
                     *(repr(float(stats[key][index])) for key in ("positive", "negative", "ratio")))
                    for index in range(loss.num_classes)]
                self._write_summaries(name, step, means)
            if with_image and not repeated:
                self._write_image(name, step, stats, counts, class_names, groups)
        if self._writer is not None:
            self._writer.flush()
        if csv_rows and self.csv_path is not None:
            self._append_csv(csv_rows)
        self._last_written_step = step

    def _write_summaries(self, name, step, means):
        if self._writer is None:
            return
        key = (name, tuple(means))
        if key not in self._summary_functions:
            self._summary_functions[key] = _summary_function(name, tuple(means))
        tf = _tensorflow()
        with self._writer.as_default():
            self._summary_functions[key](
                tf.constant(step, tf.int64), tf.constant(list(means.values()), tf.float32))

    def _write_image(self, name, step, stats, counts, class_names, groups):
        if self._writer is None:
            return
        try:
            from keras_eql.plotting import StatisticsFigure

            if name not in self._figures:  # built once: redrawing only the statistics is cheap
                self._figures[name] = [StatisticsFigure(figsize=IMAGE_FIGSIZE, dpi=IMAGE_DPI, panels=[panel])
                                       for panel in IMAGE_PANELS]
            pixels = []
            for figure in self._figures[name]:  # the card shows the name and step: no title
                figure.update(stats, counts, class_names=class_names, groups=groups, title="")
                pixels.append(figure.rgba())
            pixels = np.stack(pixels)
        except ImportError as error:
            self._warn_once("matplotlib", f"GradientStatisticsLogger: no image summaries ({error}).")
            return
        key = ("image", name)
        if key not in self._summary_functions:
            self._summary_functions[key] = _image_summary_function(name)
        tf = _tensorflow()
        with self._writer.as_default():
            self._summary_functions[key](tf.constant(step, tf.int64), pixels)

    def _append_csv(self, rows):
        path = os.fspath(self.csv_path)
        is_new = not os.path.exists(path) or os.path.getsize(path) == 0
        if not is_new and not self._csv_checked:
            with open(path, newline="") as handle:
                header = next(csv.reader(handle), [])
            if tuple(header) != CSV_COLUMNS:
                raise ValueError(
                    f"GradientStatisticsLogger: {path!r} has columns {header}, not "
                    f"{list(CSV_COLUMNS)}; use a new csv_path.")
        self._csv_checked = True
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", newline="") as handle:
            writer = csv.writer(handle)
            if is_new:
                writer.writerow(CSV_COLUMNS)
            writer.writerows(rows)
