"""The statistics of the forward-statistics backends (JAX, PyTorch), written once.

`keras_eql._forward` computes a step's per-class sums in the forward pass;
`ForwardStatistics` holds what they accumulate, in Keras variables, and
folds them in with `keras.ops` (a step with anything non-finite adds
nothing). What differs between backends, how the variables become part of
a training step's state and when an update would be lost, is in the
backend's module (`jax.py`, `torch.py`).
"""

import keras
import numpy as np
from keras import ops
from keras.src.backend.common.stateless_scope import StatelessScope

from keras_eql._format import STATISTICS_FORMAT, StatisticsState


class ForwardStatistics(StatisticsState, keras.metrics.Metric):
    """Accumulated per-class positive/negative gradient magnitudes, as model state.

    The interface of `GradientStatistics` (`ratio`, `numpy`, `step_count`,
    `reset`, `assign`, `accumulate_sums`), held by Metric variables: under
    JAX a model that tracks it (`keras_eql.attach`) carries them through its
    training step; under PyTorch they are plain stateful variables that the
    update assigns in place. Keras's metric protocol is inert: `reset_state()`
    (every epoch, every `evaluate()`) keeps the sums, `result()` logs nothing.
    A backend subclasses it for its checks (`check_attached`, `check_update`).
    """

    def __init__(self, num_classes, *, initial_ratio, clip_ratio, decay=None, minimum_format=1,
                 name):
        super().__init__(name=f"{name}_statistics")
        self.num_classes = int(num_classes)
        self.initial_ratio = float(initial_ratio)
        self.clip_ratio = bool(clip_ratio)
        self.decay = decay
        self.minimum_format = int(minimum_format)
        self.loss_name = name
        shape = (self.num_classes,)
        self.positive = self.add_variable(shape, "zeros", "float32", name="positive_gradients")
        self.negative = self.add_variable(shape, "zeros", "float32", name="negative_gradients")
        self.steps = self.add_variable((), "zeros", "float32", name="steps")
        self.format = self.add_variable((), "ones", "float32", name="statistics_format")
        # A diagnostic beside the statistics, never saved (the loss saves
        # its statistics by name): the first bad label a step met, NaN while
        # none. It lives here because under JAX only a tracked Metric's
        # variables are carried through a step.
        self.first_bad_label = self.add_variable(
            (), keras.initializers.Constant(float("nan")), "float32", name="first_bad_label")

    # -- Keras's metric protocol: inert --------------------------------------
    def update_state(self, *args, **kwargs):
        """Not used: the loss updates the statistics."""

    def reset_state(self):
        """Keeps the statistics: Keras resets metrics every epoch and in `evaluate()`."""

    def result(self):
        return {}

    # Reading, `reset` and `assign`: `StatisticsState` (`keras_eql._format`).
    def check_attached(self):
        """Called in Keras's symbolic build; nothing to check where the trainer is stateful."""

    def check_update(self):
        """Called before an update is written; raise where it would be lost (JAX)."""

    def can_record(self, ok):
        """Whether `record_bad_label` may write now (JAX: only where the step carries it)."""
        return True

    def record_bad_label(self, ok, value):
        """Keep `value` if the step's labels are not `ok` and none was recorded before."""
        if not self.can_record(ok):
            return
        current = ops.convert_to_tensor(self.first_bad_label)
        self.first_bad_label.assign(ops.where(ops.isnan(current) & ~ok, value, current))

    def pop_bad_label(self):
        """The recorded bad label (None if none), cleared."""
        value = float(ops.convert_to_numpy(self.first_bad_label))
        self.first_bad_label.assign(float("nan"))
        return None if np.isnan(value) else value

    def accumulate_sums(self, positive, negative, *, inputs_finite=None):
        """Fold one step's `(C,)` sums in; a step with anything non-finite adds nothing."""
        self.check_update()
        decay = 1.0 if self.decay is None else float(self.decay)
        old_positive, old_negative, old_steps = self._current()
        new_positive = decay * old_positive + ops.cast(positive, "float32")
        new_negative = decay * old_negative + ops.cast(negative, "float32")
        finite = ops.all(ops.isfinite(new_positive)) & ops.all(ops.isfinite(new_negative))
        if inputs_finite is not None:
            finite = finite & inputs_finite
        self.positive.assign(ops.where(finite, new_positive, old_positive))
        self.negative.assign(ops.where(finite, new_negative, old_negative))
        self.steps.assign(old_steps + ops.cast(finite, "float32"))
        self.format.assign(float(STATISTICS_FORMAT))


class ForwardCounts(keras.metrics.Metric):
    """Cumulative per-class sample counts of a baseline loss, as model state.

    The interface of TensorFlow's `ClassCounts` (`numpy`, `read`, `reset`,
    `assign`) plus `add`, the forward-pass update that the baselines make
    behind the same gate as the statistics: once per training step, never
    in `evaluate()` or `predict()`. As `ForwardStatistics`, Keras's metric
    protocol is inert and a backend subclasses it for its checks.

    Args:
        num_classes: number of classes `C`.
        name: the loss's name (errors name it).
    """

    def __init__(self, num_classes, *, name):
        super().__init__(name=f"{name}_class_counts")
        self.num_classes = int(num_classes)
        self.loss_name = name
        self.counts = self.add_variable((self.num_classes,), "zeros", "float32",
                                        name="class_counts")

    # -- Keras's metric protocol: inert --------------------------------------
    def update_state(self, *args, **kwargs):
        """Not used: the loss updates the counts."""

    def reset_state(self):
        """Keeps the counts: Keras resets metrics every epoch and in `evaluate()`."""

    def result(self):
        return {}

    # -- state -----------------------------------------------------------------
    def numpy(self):
        return np.asarray(ops.convert_to_numpy(self.counts), np.float32)

    def read(self):
        """The counts as a tensor without gradient (the step's value inside a training step)."""
        return ops.stop_gradient(ops.convert_to_tensor(self.counts))

    def reset(self):
        self.counts.assign(np.zeros([self.num_classes], np.float32))

    def assign(self, counts):
        self.counts.assign(np.asarray(counts, np.float32))

    def check_attached(self):
        """Called in Keras's symbolic build; nothing to check where the trainer is stateful."""

    def check_update(self):
        """Called before an update is written; raise where it would be lost (JAX)."""

    def add(self, step_counts):
        """Add one step's `(C,)` counts."""
        self.check_update()
        self.counts.assign(ops.convert_to_tensor(self.counts) + ops.cast(step_counts, "float32"))


def call_with_state(loss, state, values, y_true, y_pred, sample_weight):
    """`loss(y_true, y_pred, sample_weight)` reading `state`'s variables from `values`.

    Keras's stateless pattern (as `Layer.stateless_call`), for the losses'
    `stateless_call`: returns `(loss value, new values)`, the update
    returned instead of written.
    """
    variables = list(state.variables)
    with StatelessScope(state_mapping=list(zip(variables, values))) as scope:
        value = loss(y_true, y_pred, sample_weight)
    return value, [scope.get_current_value(v) for v in variables]
