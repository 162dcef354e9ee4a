"""`GradientStatisticsLogger`: watch the per-class gradient statistics train.

The callback only reads the loss's statistics variables at logging points
(epoch ends, and every N steps when asked), never inside a training step, so
it works unchanged with `jit_compile=True` and adds no work to the step.
"""

import csv
import numbers
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_eql import _saving
from keras_eql._base import EqualizationLoss
from keras_eql.metrics import _check_counts, frequency_groups, rank_groups

GROUP_NAMES = ("head", "medium", "tail")
CSV_COLUMNS = ("epoch", "step", "loss", "class", "class_name", "group", "positive", "negative", "ratio")


def find_equalization_losses(loss):
    """The keras_eql losses in a compiled `model.loss`, each once, with a tag.

    Args:
        loss: `model.loss`: a loss, a string, or a list / dict of them.

    Returns:
        `[(tag, loss)]` in flattening order; the tag is the loss name, with
        `_2`, `_3`, ... appended when two losses share a name.

    Example:
        >>> import keras_eql
        >>> find_equalization_losses({"a": keras_eql.SigmoidEQL(), "b": "mse"})[0][0]
        'sigmoid_eql'
    """
    found, tags = [], set()
    for candidate in keras.tree.flatten(loss):
        if not isinstance(candidate, EqualizationLoss) or any(candidate is seen for _, seen in found):
            continue
        tag, suffix = candidate.name, 1
        while tag in tags:
            suffix += 1
            tag = f"{candidate.name}_{suffix}"
        tags.add(tag)
        found.append((tag, candidate))
    return found


def _summary_function(tag, group_names):
    """The scalars and histograms of one loss as one traced graph.

    Eagerly, each `tf.summary.histogram` dispatches dozens of small ops; one
    graph call per logging point costs a fraction of that.
    """

    @tf.function
    def write(step, group_means, ratio, positive, negative):
        for index, name in enumerate(group_names):
            tf.summary.scalar(f"{tag}/ratio_mean/{name}", group_means[index], step=step)
        for name, values in (("ratio", ratio), ("positive", positive), ("negative", negative)):
            tf.summary.histogram(f"{tag}/{name}", values, step=step)

    return write


def _image_summary_function(tag):
    """The image summary of one loss as one traced graph.

    Eagerly, `tf.summary.image` dispatches a dozen small ops around the PNG
    encoding; traced, the encoding is most of what is left.
    """

    @tf.function(input_signature=[tf.TensorSpec([], tf.int64), tf.TensorSpec([None, None, 4], tf.uint8)])
    def write(step, pixels):
        tf.summary.image(f"{tag}/gradient_statistics", pixels[None, ..., :3], step=step)  # opaque: RGB

    return write


class GradientStatisticsLogger(keras.callbacks.Callback):
    """Logs the per-class gradient statistics of every keras_eql loss.

    At each epoch end, and every `every_n_steps` training steps when given,
    for each keras_eql loss of the compiled model (tagged by its name):

    * TensorBoard (`log_dir`): scalars `<tag>/ratio_mean/<group>` (mean ratio
      of the head, medium and tail classes), histograms `<tag>/ratio`,
      `<tag>/positive`, `<tag>/negative`, and at epoch ends only, the image
      `<tag>/gradient_statistics` of `plot_gradient_statistics` (needs
      matplotlib; skipped with a warning without it). The step is
      `model.optimizer.iterations`, as in Keras's own TensorBoard callback.
    * CSV (`csv_path`): one row per class with the columns `CSV_COLUMNS`,
      appended (the header is written when the file is new).
    * `logs`: `<tag>_ratio_<group>` at epoch ends, shown by the progress bar
      and kept in `History`.

    Groups: with `class_counts`, `keras_eql.metrics.frequency_groups` (more
    than 100 / 20-100 / fewer than 20, else equal thirds by count rank);
    without, equal thirds by the rank of the accumulated positive gradient.
    A group with no class (fewer than three classes) is left out.

    Args:
        log_dir: TensorBoard log directory, or None.
        csv_path: CSV file to append to, or None.
        every_n_steps: also log every this many training batches, or None.
        class_counts: training samples per class: a sequence for every loss,
            or a dict `{tag: sequence}`.
        class_names: names per class, same forms as `class_counts`.
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
                 class_names=None, image_every_n_epochs=1):
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
        self.log_dir = log_dir
        self.csv_path = csv_path
        self.every_n_steps = None if every_n_steps is None else int(every_n_steps)
        self.class_counts = class_counts
        self.class_names = class_names
        self.image_every_n_epochs = image_every_n_epochs
        self._losses = []
        self._warned = set()
        self._writer = None
        self._figures = {}
        self._summary_functions = {}
        self._csv_checked = False
        self._epoch = 0
        self._epoch_first_step = 0
        self._last_trigger_step = 0
        self._last_written_step = None

    # -- Keras hooks ---------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._losses = find_equalization_losses(getattr(self.model, "loss", None))
        if not self._losses:
            if _saving.overrides_compile(self.model):
                raise ValueError(_saving.dropped_loss_message(self.model, "GradientStatisticsLogger"))
            self._warn_once(
                "no_loss",
                "GradientStatisticsLogger: the model has no keras_eql loss; nothing will be logged.")
            return
        tags = [tag for tag, _ in self._losses]
        for label, value in (("class_counts", self.class_counts), ("class_names", self.class_names)):
            unknown = sorted(set(value) - set(tags)) if isinstance(value, dict) else []
            if unknown:
                raise ValueError(
                    f"GradientStatisticsLogger: {label} has keys {unknown} that match no "
                    f"loss; losses are {tags}.")
        for tag, loss in self._losses:
            if loss.num_classes is not None:
                self._class_info(tag, loss.num_classes)
        if self.log_dir is not None and self._writer is None:
            self._writer = tf.summary.create_file_writer(os.fspath(self.log_dir))
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
            self._log(logs=None, with_image=False)

    def on_epoch_end(self, epoch, logs=None):
        if self._losses:
            every = self.image_every_n_epochs
            self._log(logs=logs, with_image=every is not None and (epoch + 1) % every == 0)
            self._last_trigger_step = self._last_written_step

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- logging -------------------------------------------------------------
    def _optimizer_step(self):
        return int(self.model.optimizer.iterations.numpy())

    def _warn_once(self, key, message):
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)

    def _class_info(self, tag, num_classes):
        """Validated `(counts or None, names)` of a loss's classes."""
        counts, names = self.class_counts, self.class_names
        counts = counts.get(tag) if isinstance(counts, dict) else counts
        names = names.get(tag) if isinstance(names, dict) else names
        if counts is not None:
            counts = _check_counts(f"GradientStatisticsLogger: class_counts of '{tag}'", counts)
            if counts.size != num_classes:
                raise ValueError(
                    f"GradientStatisticsLogger: class_counts for '{tag}' has {counts.size} "
                    f"entries but the loss has {num_classes} classes.")
        if names is None:
            names = [str(index) for index in range(num_classes)]
        elif isinstance(names, str) or len(names) != num_classes:
            raise ValueError(
                f"GradientStatisticsLogger: class_names for '{tag}' must list "
                f"{num_classes} names, got {names!r:.200}.")
        return counts, [str(name) for name in names]

    def _log(self, logs, with_image):
        step = self._optimizer_step()
        repeated = step == self._last_written_step
        csv_rows = []
        for tag, loss in self._losses:
            if loss.statistics is None:  # built on the first training call
                continue
            stats = loss.gradient_statistics()
            counts, names = self._class_info(tag, loss.num_classes)
            groups = frequency_groups(counts) if counts is not None else rank_groups(stats["positive"])
            means = {name: float(np.mean(stats["ratio"][groups == index]))
                     for index, name in enumerate(GROUP_NAMES) if np.any(groups == index)}
            if logs is not None:
                logs.update({f"{tag}_ratio_{name}": mean for name, mean in means.items()})
            if not repeated:  # nothing has trained since the last write
                csv_rows += [
                    (self._epoch, step, tag, index, names[index], GROUP_NAMES[groups[index]],
                     *(repr(float(stats[key][index])) for key in ("positive", "negative", "ratio")))
                    for index in range(loss.num_classes)]
                self._write_summaries(tag, step, stats, means)
            if with_image and not repeated:
                self._write_image(tag, step, stats, counts, names)
        if self._writer is not None:
            self._writer.flush()
        if csv_rows and self.csv_path is not None:
            self._append_csv(csv_rows)
        self._last_written_step = step

    def _write_summaries(self, tag, step, stats, means):
        if self._writer is None:
            return
        key = (tag, tuple(means))
        if key not in self._summary_functions:
            self._summary_functions[key] = _summary_function(tag, tuple(means))
        with self._writer.as_default():
            self._summary_functions[key](
                tf.constant(step, tf.int64), tf.constant(list(means.values()), tf.float32),
                *(tf.constant(stats[name], tf.float32) for name in ("ratio", "positive", "negative")))

    def _write_image(self, tag, step, stats, counts, names):
        if self._writer is None:
            return
        try:
            from keras_eql.plotting import StatisticsFigure

            if tag not in self._figures:  # built once: redrawing only the statistics is cheap
                self._figures[tag] = StatisticsFigure()
            panels = self._figures[tag]
            panels.update(stats, counts, class_names=names)
            pixels = panels.rgba()
        except ImportError as error:
            self._warn_once("matplotlib", f"GradientStatisticsLogger: no image summaries ({error}).")
            return
        key = ("image", tag)
        if key not in self._summary_functions:
            self._summary_functions[key] = _image_summary_function(tag)
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
