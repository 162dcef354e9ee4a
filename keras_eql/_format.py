"""What the stored statistics mean, and how they are read and reset: shared by every backend.

Kept apart from `_statistics` (TensorFlow variables) so that a backend
without TensorFlow reads and writes the same format.
"""

import numpy as np
from keras import ops

# The authors' `pos_neg = pos_grad / (neg_grad + 1e-10)`.
RATIO_EPSILON = 1e-10

# What the stored sums mean. Format 1 (keras_eql 0.1.0, until commit e72f151):
# every loss accumulated the gradient of its reduced output, so Sigmoid-EQL's
# increments carried the reduction's 1/N_t. Format 2: Sigmoid-EQL accumulates
# the per-sample gradients without that normaliser, as the authors do; the
# other losses' sums mean what they meant. A checkpoint written before the
# format existed has no record of it and reads as format 1.
STATISTICS_FORMAT = 2


class StatisticsState:
    """Reading, resetting and assigning the statistics, written once for every backend.

    A mixin for `GradientStatistics` (TensorFlow variables) and
    `_backend._forward_state.ForwardStatistics` (Keras Metric variables):
    both hold `positive`, `negative`, `steps` and `format` variables and the
    attributes `num_classes`, `initial_ratio`, `clip_ratio` and
    `minimum_format`. How a step adds to them stays with each backend.
    """

    def _read(self):
        """The variables' values `(positive, negative, steps, format)` (a backend may copy)."""
        return tuple(ops.convert_to_tensor(v)
                     for v in (self.positive, self.negative, self.steps, self.format))

    def _current(self):
        """`(positive, negative, steps)`, the initial state if their format is too old."""
        positive, negative, steps, stored_format = self._read()
        if self.minimum_format <= 1:
            return positive, negative, steps
        usable = stored_format >= float(self.minimum_format)
        return (ops.where(usable, positive, 0.0), ops.where(usable, negative, 0.0),
                ops.where(usable, steps, 0.0))

    def is_stale(self):
        """Whether the stored sums are of a format this loss cannot continue from."""
        return bool(float(ops.convert_to_numpy(self.format)) < self.minimum_format
                    and float(ops.convert_to_numpy(self.steps)) > 0)

    def ratio(self):
        """`G_pos / (G_neg + 1e-10)`, or `initial_ratio` for untouched classes."""
        positive, negative, _ = self._current()
        ratio = ops.where(positive + negative > 0.0, positive / (negative + RATIO_EPSILON),
                          self.initial_ratio)
        return ops.clip(ratio, 0.0, 1.0) if self.clip_ratio else ratio

    def numpy(self):
        """The statistics as NumPy arrays (`positive`, `negative`, `ratio`)."""
        positive, negative, _ = self._current()
        return {"positive": np.asarray(ops.convert_to_numpy(positive)),
                "negative": np.asarray(ops.convert_to_numpy(negative)),
                "ratio": np.asarray(ops.convert_to_numpy(self.ratio()))}

    def step_count(self):
        """Number of steps folded into the sums (0 for stale sums)."""
        return float(ops.convert_to_numpy(self._current()[2]))

    def reset(self):
        """Back to the initial state (step 0 is the plain base loss again)."""
        zeros = np.zeros([self.num_classes], np.float32)
        self.positive.assign(zeros)
        self.negative.assign(zeros)
        self.steps.assign(0.0)
        self.format.assign(float(STATISTICS_FORMAT))

    def assign(self, positive, negative, steps):
        """Overwrite the state with sums of the current format (used when loading)."""
        self.positive.assign(np.asarray(positive, np.float32))
        self.negative.assign(np.asarray(negative, np.float32))
        self.steps.assign(np.asarray(steps, np.float32))
        self.format.assign(float(STATISTICS_FORMAT))
