"""TensorFlow: the online class counts are a `tf.Variable` written in the backward pass."""

import numpy as np
import tensorflow as tf

from keras_eql._statistics import _variable, all_reduce_sum, identity_with_backward_updates

COUNTS_KEY = "class_counts"


class ClassCounts(tf.__internal__.tracking.AutoTrackable):
    """Cumulative per-class sample counts, summed over replicas.

    Follows `GradientStatistics`: a float32 `ON_WRITE` variable with
    `ONLY_FIRST_REPLICA` aggregation, filled in the backward pass of an
    identity on the logits (once per `tape.gradient`, so never by
    `evaluate()` or `predict()`), with the step's counts summed over
    replicas explicitly.

    Args:
        num_classes: number of classes `C`.
        name: prefix of the variable name.
    """

    def __init__(self, num_classes, *, name):
        self.num_classes = int(num_classes)
        self.counts = _variable(
            np.zeros([self.num_classes], np.float32), f"{name}/{COUNTS_KEY}",
            tf.VariableSynchronization.ON_WRITE)

    def numpy(self):
        return np.asarray(self.counts.numpy())

    def read(self):
        """The counts as a tensor without gradient."""
        return tf.stop_gradient(tf.convert_to_tensor(self.counts))

    def reset(self):
        self.counts.assign(np.zeros([self.num_classes], np.float32))

    def assign(self, counts):
        self.counts.assign(np.asarray(counts, np.float32))

    def capture(self, logits, class_targets, labels_ok=True):
        """Identity on `logits` whose backward pass adds this step's counts.

        Args:
            logits: the loss's logits.
            class_targets: `(..., C)` float targets of the counted rows (zero
                rows for background and ignored rows; soft targets count
                fractionally).
            labels_ok: scalar bool; False (a bad label under XLA) adds nothing.

        Returns:
            `logits`, unchanged; its gradient passes through unchanged.
        """
        class_targets = tf.stop_gradient(tf.cast(class_targets, tf.float32))

        def updates_for(upstream):
            local = tf.reduce_sum(tf.reshape(class_targets, [-1, self.num_classes]), axis=0)
            local = tf.where(labels_ok, local, 0.0)
            (step_counts,) = all_reduce_sum(local)
            return [self.counts.assign_add(step_counts)]

        return identity_with_backward_updates(logits, updates_for)
