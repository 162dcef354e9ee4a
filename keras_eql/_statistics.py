"""Per-class gradient statistics: the state that drives the equalization losses.

`GradientStatistics` owns float32 variables, the accumulated positive and
negative gradient magnitudes per class, the number of steps folded in and the
format of the sums (`STATISTICS_FORMAT`),
and the backward-pass hooks that fill them:

* `accumulate_sums(positive, negative)`: folds one step's per-class sums
  `sum_i y_ij |g_ij|` and `sum_i (1 - y_ij) |g_ij|` in. The shipped losses
  call it from their fused backward pass (`keras_eql._fused`).
* `capture(logits, positive_mask)`: identity on the logits whose backward
  function computes those sums from the gradient (`accumulate`): the plain
  way to give a loss written with `keras_eql.functional` its statistics.
* `capture_sums(logits, positive, negative)`: identity on the logits whose
  backward function folds in sums the caller made in the forward pass (for
  statistics that are not the gradient of the reduced loss, such as
  Sigmoid-EQL's per-sample sums).
* `record_upstream(loss)`: identity on the reduced loss whose backward
  function stores `d(total)/d(loss)` (mixed-precision loss scale, compile
  `loss_weights`), so that the sums can be divided by it again.

Why this arrangement (see docs/design.md): the backward function runs once per
`tape.gradient`, never in `evaluate()`/`predict()`, works under XLA and
`tf.distribute`, and sees exactly the gradient the optimizer will see.
"""

import numpy as np
import tensorflow as tf

from keras_eql._format import STATISTICS_FORMAT, StatisticsState


def _replica_context():
    """The replica context when running in sync with other replicas, else None."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return None
    return context


def all_reduce_sum(*values):
    """Sum tensors over replicas; a no-op on one device (no collective needed)."""
    context = _replica_context()
    if context is None:
        return values
    return tuple(context.all_reduce(tf.distribute.ReduceOp.SUM, list(values)))


def identity_with_backward_updates(value, updates_for):
    """Identity on `value` whose backward pass first runs `updates_for(upstream)`.

    The one mechanism behind every statistics and count update: it runs once
    per `tape.gradient` through `value`, never in a forward-only call
    (`evaluate()`, `predict()`), under XLA and `tf.distribute` alike.

    Args:
        value: a tensor.
        updates_for: `upstream -> list of ops` the returned gradient depends on.

    Returns:
        `value`, unchanged; its gradient passes through unchanged.
    """

    @tf.custom_gradient
    def _identity(z):
        def grad(upstream):
            with tf.control_dependencies(updates_for(upstream)):
                return tf.identity(upstream)

        return tf.identity(z), grad

    return _identity(value)


def _variable(initial, name, synchronization, dtype=tf.float32):
    # A callable initial value can be lifted out of the scratch graph in which
    # Keras first calls the loss under a strategy (tf-mechanics Q2).
    return tf.Variable(
        lambda: tf.constant(initial, dtype),
        trainable=False,
        name=name,
        dtype=dtype,
        synchronization=synchronization,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )


class GradientStatistics(StatisticsState, tf.__internal__.tracking.AutoTrackable):
    """Accumulated per-class positive/negative gradient magnitudes.

    Updates are all-reduced (summed) over replicas explicitly, then written
    once (`ONLY_FIRST_REPLICA`), so every replica holds the statistics of
    the global batch, and a step whose global increments are not all finite
    is dropped as a whole.

    Args:
        num_classes: number of classes `C` with statistics.
        initial_ratio: the ratio reported before a class has any statistics.
        clip_ratio: clip the ratio to [0, 1] (EFL/EQFL).
        decay: optional factor in (0, 1] by which the sums are multiplied
            before each update (exponential forgetting); `None` keeps the
            paper's plain sums.
        minimum_format: the oldest `STATISTICS_FORMAT` whose sums this loss
            can continue from. Sums restored from an older format (e.g. a
            `tf.train.Checkpoint` written by keras_eql 0.1.0, which has no
            `format` variable, so it keeps its initial value 1) read as the
            initial state and are replaced on the next update: never mixed.
        name: prefix of the variable names.
    """

    def __init__(self, num_classes, *, initial_ratio, clip_ratio, decay=None,
                 minimum_format=1, name):
        self.num_classes = int(num_classes)
        self.initial_ratio = float(initial_ratio)
        self.clip_ratio = bool(clip_ratio)
        self.decay = decay
        self.minimum_format = int(minimum_format)
        on_write = tf.VariableSynchronization.ON_WRITE
        zeros = np.zeros([self.num_classes], np.float32)
        self.positive = _variable(zeros, f"{name}/positive_gradients", on_write)
        self.negative = _variable(zeros, f"{name}/negative_gradients", on_write)
        self.steps = _variable(0.0, f"{name}/steps", on_write)
        # Starts at 1 ("old"): a checkpoint without it must not pass for new.
        # Every update writes the current format.
        self.format = _variable(1.0, f"{name}/statistics_format", on_write)
        # Per replica and not part of the Keras saving hooks: a scratch value.
        self._upstream = _variable(
            1.0, f"{name}/upstream_factor", tf.VariableSynchronization.ON_READ
        )

    # Reading, `reset` and `assign`: `StatisticsState` (`keras_eql._format`).
    def _read(self):
        # TensorFlow's own conversion: mirrored variables read in replica context.
        return tuple(tf.convert_to_tensor(v)
                     for v in (self.positive, self.negative, self.steps, self.format))

    def _accumulate(self, positive, negative, inputs_finite):
        # A non-finite input anywhere makes this replica's increments NaN, and
        # the replica sum carries the NaN to every replica: one global verdict.
        if inputs_finite is not None:
            positive = tf.where(inputs_finite, positive, np.nan)
        positive, negative = all_reduce_sum(positive, negative)
        decay = 1.0 if self.decay is None else float(self.decay)
        old_positive, old_negative, old_steps = self._current()
        new_positive = decay * old_positive + positive
        new_negative = decay * old_negative + negative
        # Checked on the updated sums (the same verdict: the stored ones are
        # finite). The fused losses' matrix-vector product then feeds an add,
        # which XLA fuses as its output; a check on the increments instead
        # made XLA fuse the (N, K) operand into a naive matrix-vector loop
        # (+30% of a training step at 512 rows).
        finite = tf.logical_and(
            tf.reduce_all(tf.math.is_finite(new_positive)),
            tf.reduce_all(tf.math.is_finite(new_negative)),
        )
        return [
            self.positive.assign(tf.where(finite, new_positive, old_positive)),
            self.negative.assign(tf.where(finite, new_negative, old_negative)),
            self.steps.assign(old_steps + tf.cast(finite, tf.float32)),
            self.format.assign(float(STATISTICS_FORMAT)),
        ]

    def accumulate(self, gradient, positive_mask, *, unscale, inputs_finite=None):
        """Ops that fold one step's gradient w.r.t. the logits into the sums.

        Call it inside a backward function, once per step.

        Args:
            gradient: `(..., K)` gradient of the loss w.r.t. its logits. Only
                the first `num_classes` columns count (objectness is last).
            positive_mask: 0/1 tensor broadcastable to `gradient`.
            unscale: divide by the factor recorded by `record_upstream`.
            inputs_finite: optional scalar bool; when False (a NaN/inf logit,
                whose gradient may still be finite) the step adds nothing.

        Returns:
            A list of update ops to depend on.
        """
        width = gradient.shape[-1]
        magnitude = tf.reshape(tf.abs(tf.cast(gradient, tf.float32)), [-1, width])
        magnitude = magnitude[:, : self.num_classes]
        mask = tf.cast(positive_mask, tf.float32)
        mask = tf.reshape(tf.broadcast_to(mask, tf.shape(gradient)), [-1, width])
        mask = mask[:, : self.num_classes]
        positive = tf.reduce_sum(magnitude * mask, axis=0)
        negative = tf.reduce_sum(magnitude * (1.0 - mask), axis=0)
        return self.accumulate_sums(positive, negative, unscale=unscale,
                                    inputs_finite=inputs_finite)

    def accumulate_sums(self, positive, negative, *, unscale, inputs_finite=None):
        """Like `accumulate`, from this step's per-class sums of |gradient|.

        For a fused backward pass that already reduced the gradient to
        `sum_i y_ij |g_ij|` and `sum_i (1 - y_ij) |g_ij|` (`(C,)` each).
        """
        updates = []
        if unscale:
            factor = self._upstream.read_value()
            positive, negative = positive / factor, negative / factor
            # Back to 1 so that a later gradient that bypasses
            # `record_upstream` is not scaled by a stale factor.
            with tf.control_dependencies([factor]):
                updates.append(self._upstream.assign(1.0))
        return updates + self._accumulate(positive, negative, inputs_finite)

    def capture(self, logits, positive_mask, *, unscale, inputs_finite=None):
        """Identity on `logits` that runs `accumulate` in the backward pass.

        Returns:
            `logits`, unchanged; its gradient passes through unchanged.
        """
        positive_mask = tf.stop_gradient(positive_mask)
        return identity_with_backward_updates(logits, lambda upstream: self.accumulate(
            upstream, positive_mask, unscale=unscale, inputs_finite=inputs_finite))

    def capture_sums(self, logits, positive, negative, *, inputs_finite=None):
        """Identity on `logits` whose backward pass folds in sums made in the forward pass.

        For statistics that are not the gradient of the reduced loss, such
        as Sigmoid-EQL's per-sample sums without the reduction's normaliser:
        the caller computes the step's `(C,)` sums itself; they still enter
        only when the loss is differentiated (once per training step).

        Returns:
            `logits`, unchanged; its gradient passes through unchanged.
        """
        positive, negative = tf.stop_gradient(positive), tf.stop_gradient(negative)
        return identity_with_backward_updates(logits, lambda upstream: self.accumulate_sums(
            positive, negative, unscale=False, inputs_finite=inputs_finite))

    def record_upstream(self, loss):
        """Identity on a scalar loss that records `d(total)/d(loss)`."""
        return identity_with_backward_updates(loss, lambda upstream: [
            self._upstream.assign(tf.reshape(tf.cast(upstream, tf.float32), []))])
