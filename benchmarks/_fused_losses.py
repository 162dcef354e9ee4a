"""Private copies of the keras_eql losses on `keras_eql._fused` (the integrated variant).

The benchmark measures the integration proposed for the core before it is
made: `EqualizationLoss.call` with the fused row loss in place of
`capture` + `_row_loss`, statistics through `on_column_sums`, and integer
labels kept as ids (no float one-hot, no `(N, C)` mask for the normalizer).
Everything else (ignored rows, reduction, upstream recording, saving) is
the shipped code, inherited. The label checks are the shipped ones except
that the offending value is fetched with `tf.gather`: indexing with a tensor
(`values[tf.argmin(...)]`, as `_targets._first_failure` does) makes XLA treat
the labels as a compile-time constant and recompile for every new batch.
"""

import numpy as np
import tensorflow as tf
from keras.src.backend import set_keras_mask

import keras_eql
from keras_eql import _fused, _targets
from keras_eql._statistics import all_reduce_sum


def _first_failure(values, ok):
    """The first value where `ok` is False (NaN if none), by gather (XLA-safe)."""
    values = tf.concat([tf.reshape(values, [-1]), [np.nan]], 0)
    ok = tf.concat([tf.reshape(ok, [-1]), [False]], 0)
    return tf.gather(values, tf.argmin(tf.cast(ok, tf.int32)))


def dense_targets(loss_name, targets, logits, *, binary):
    """`_targets.dense_targets` with `_first_failure` above."""
    if targets.shape.rank != logits.shape.rank or not targets.shape.is_compatible_with(logits.shape):
        return _targets.dense_targets(loss_name, targets, logits, binary=binary)  # raises
    targets = tf.cast(targets, tf.float32)
    flat = tf.reshape(targets, [-1])
    if binary:
        ok = tf.equal(flat, 0.0) | tf.equal(flat, 1.0)
        message = "dense target {} is not 0 or 1."
    else:
        ok = (flat >= 0.0) & (flat <= 1.0)
        message = "dense target {} is outside [0, 1]."
    checks = _targets._raise_if(loss_name, tf.logical_not(tf.reduce_all(ok)), message,
                                _first_failure(flat, ok))
    return targets, checks


def sparse_labels(loss_name, labels, *, num_classes, ignore_class, allow_background):
    """`_targets.sparse_targets` without the one-hot.

    Returns:
        `(hot, safe, valid, checks)`: ids with ignored rows as background
        (`num_classes`), ids with ignored rows as 0, the validity mask (None
        without `ignore_class`) and the graph-mode assertions.
    """
    top = num_classes if allow_background else num_classes - 1
    raw = tf.cast(labels, tf.float32)
    ids = tf.cast(tf.round(raw), tf.int32)
    in_range = (ids >= 0) & (ids <= top)
    valid = None
    if ignore_class is not None:
        valid = tf.not_equal(ids, int(ignore_class))
        in_range = in_range | tf.logical_not(valid)
    ok = in_range & tf.equal(raw, tf.cast(ids, tf.float32))
    checks = _targets._raise_if(
        loss_name, tf.logical_not(tf.reduce_all(ok)),
        "label {} is out of range; expected an integer in 0.." + str(top) + ".",
        _first_failure(raw, ok))
    if valid is None:
        return ids, ids, None, checks
    return tf.where(valid, ids, num_classes), tf.where(valid, ids, 0), valid, checks


class _Fused:
    """Mixin replacing `EqualizationLoss.call` by the fused row losses."""

    def _column_sums_hook(self, inputs_finite):
        """`on_column_sums` folding the sums into the statistics.

        `GradientStatistics.accumulate` minus the reduction, and with the
        finiteness checked on the updated sums rather than on the increments
        (the same verdict, as the stored sums are finite): then the
        matrix-vector product that makes the negative sums feeds an add,
        which XLA fuses as its output, instead of XLA fusing the (N, K)
        operand into a naive matrix-vector loop (+30% of a training step at
        512 rows).
        """
        statistics = self._statistics
        unscale = self._records_upstream()
        decay = 1.0 if statistics.decay is None else float(statistics.decay)

        def hook(positive, negative):
            updates = []
            if unscale:
                factor = statistics._upstream.read_value()
                positive, negative = positive / factor, negative / factor
                with tf.control_dependencies([factor]):
                    updates.append(statistics._upstream.assign(1.0))
            if inputs_finite is not None:
                positive = tf.where(inputs_finite, positive, np.nan)
            positive, negative = all_reduce_sum(positive, negative)
            old_positive = tf.convert_to_tensor(statistics.positive)
            old_negative = tf.convert_to_tensor(statistics.negative)
            new_positive = decay * old_positive + positive
            new_negative = decay * old_negative + negative
            finite = tf.logical_and(tf.reduce_all(tf.math.is_finite(new_positive)),
                                    tf.reduce_all(tf.math.is_finite(new_negative)))
            return updates + [
                statistics.positive.assign(tf.where(finite, new_positive, old_positive)),
                statistics.negative.assign(tf.where(finite, new_negative, old_negative)),
                statistics.steps.assign_add(tf.cast(finite, tf.float32)),
            ]

        return hook

    def call(self, y_true, y_pred):
        label = type(self).__name__
        width = y_pred.shape[-1]
        num_classes = width - self._extra_columns()
        if self._statistics is None:
            self._build(num_classes)
        self._check_distribution()
        if _targets.is_sparse(y_true, y_pred):
            if y_true.shape.rank == y_pred.shape.rank:
                y_true = tf.squeeze(y_true, -1)
            hot, safe, valid, checks = sparse_labels(
                label, y_true, num_classes=self.num_classes,
                ignore_class=self.ignore_class, allow_background=self._allow_background)
            targets = safe if isinstance(self, keras_eql.SoftmaxEQL) else hot
        else:
            targets, checks = dense_targets(
                label, y_true, y_pred, binary=self._binary_targets)
            valid = None
        with tf.control_dependencies(checks):
            logits = tf.identity(y_pred)
        hook = None
        if self.update_statistics:
            # Whether every counted logit is finite, from one plain reduction
            # of the logits (a NaN or inf makes its row sum non-finite).
            row_sums = tf.reduce_sum(tf.cast(y_pred, tf.float32), -1)
            if valid is not None:
                row_sums = tf.where(valid, row_sums, 0.0)
            hook = self._column_sums_hook(
                tf.stop_gradient(tf.math.is_finite(tf.reduce_sum(row_sums))))
        if valid is not None:
            # NaN/inf logits of ignored rows must not leak into the gradient.
            logits = tf.where(valid[..., None], logits, tf.zeros_like(logits))
        ratio = tf.stop_gradient(self._statistics.ratio())
        losses = self._fused_rows(targets, logits, ratio, hook)
        normalizer = self._fused_normalizer(targets, valid)
        if normalizer is not None:
            losses = losses / normalizer
        losses = tf.cast(losses, y_pred.dtype)
        if valid is not None:
            losses = tf.where(valid, losses, tf.zeros_like(losses))
            set_keras_mask(losses, valid)
        return losses

    def _fused_normalizer(self, targets, valid):
        if not getattr(self, "normalize_by_positives", False):
            return None
        if targets.dtype.is_integer:
            positive_rows = targets < self.num_classes  # ignored rows are background
        else:
            positive_rows = tf.reduce_any(targets[..., : self.num_classes] > 0.0, -1)
            if valid is not None:
                positive_rows = positive_rows & valid
        (count,) = all_reduce_sum(tf.reduce_sum(tf.cast(positive_rows, tf.float32)))
        return tf.maximum(count, 1.0)


class FusedSigmoidEQL(_Fused, keras_eql.SigmoidEQL):
    def _fused_rows(self, targets, logits, ratio, hook):
        return _fused.sigmoid_eql_rows(
            targets, logits, ratio=ratio, gamma=self.gamma, mu=self.mu, alpha=self.alpha,
            mapping=self.mapping, objectness=self.objectness, on_column_sums=hook)


class FusedSoftmaxEQL(_Fused, keras_eql.SoftmaxEQL):
    def _fused_rows(self, targets, logits, ratio, hook):
        return _fused.softmax_eql_rows(
            targets, logits, indicator=tf.stop_gradient(self._indicator_values(ratio)),
            tau=self.tau, eps=self.eps, on_column_sums=hook)


class FusedEqualizedFocalLoss(_Fused, keras_eql.EqualizedFocalLoss):
    def _fused_rows(self, targets, logits, ratio, hook):
        return _fused.equalized_focal_loss_rows(
            targets, logits, ratio=ratio, alpha=self.alpha, gamma=self.gamma,
            scale=self.scale, on_column_sums=hook)


class FusedEqualizedQualityFocalLoss(_Fused, keras_eql.EqualizedQualityFocalLoss):
    def _fused_rows(self, targets, logits, ratio, hook):
        return _fused.equalized_quality_focal_loss_rows(
            targets, logits, ratio=ratio, gamma=self.gamma, scale=self.scale,
            on_column_sums=hook)


FUSED = {
    keras_eql.SigmoidEQL: FusedSigmoidEQL,
    keras_eql.SoftmaxEQL: FusedSoftmaxEQL,
    keras_eql.EqualizedFocalLoss: FusedEqualizedFocalLoss,
    keras_eql.EqualizedQualityFocalLoss: FusedEqualizedQualityFocalLoss,
}
