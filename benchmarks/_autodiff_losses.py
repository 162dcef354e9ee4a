"""The keras_eql losses on the plain autodiff path, as a reference.

The shipped classes run `keras_eql._fused`: each loss with its analytic
gradient, the statistics' column sums reduced in the same backward pass and
integer labels never expanded. The classes here replace only the row loss by
the way a user would write it from the public pieces: autodiff through
`keras_eql.functional` on one-hot targets, with `GradientStatistics.capture`
reducing the gradient into the statistics by masked sums. Everything else
(labels, ignored rows, reduction, loss-scale unscaling, saving) is the
shipped code, inherited.

`benchmarks/loss_overhead.py` and `benchmarks/train_step.py` time them as
the `autodiff` implementation; `tests/test_fused.py` checks that the shipped
classes equal them (loss, gradient and statistics, golden tolerances).
"""

import tensorflow as tf

import keras_eql
from keras_eql import functional


def _per_sample_capture(statistics, rows_of, logits, targets, row_weights, finite):
    """Identity on `logits` whose backward pass adds the per-sample column sums.

    The sums come from a nested tape in the forward pass: the gradient of
    `sum_i row_weights_i rows_i` w.r.t. the logits, split by the targets.
    """
    with tf.GradientTape() as tape:
        tape.watch(logits)
        weighted = tf.reduce_sum(rows_of(logits) * row_weights)
    local = tf.abs(tf.reshape(tape.gradient(weighted, logits), [-1, logits.shape[-1]]))
    local = local[:, : statistics.num_classes]
    mask = tf.reshape(targets, [-1, targets.shape[-1]])[:, : statistics.num_classes] > 0.0
    positive = tf.reduce_sum(tf.where(mask, local, 0.0), 0)
    negative = tf.reduce_sum(tf.where(mask, 0.0, local), 0)
    return statistics.capture_sums(logits, positive, negative, inputs_finite=finite)


class _Autodiff:
    """Mixin: `_row_loss` by autodiff of `keras_eql.functional`, statistics by `capture`.

    Per-sample statistics (Sigmoid-EQL, FL+EQL) come from `_per_sample_capture`.
    """

    def _row_loss(self, targets, logits, ratio, on_column_sums, row_weights=None):
        width = logits.shape[-1]
        ids = targets if targets.dtype.is_integer else None
        if ids is not None:
            # Ids outside [0, K) (background without an objectness column)
            # become all-zero rows.
            targets = tf.one_hot(ids, width + 1, dtype=tf.float32)[..., :width]
        if on_column_sums is not None and row_weights is not None:
            finite = tf.stop_gradient(tf.reduce_all(tf.math.is_finite(logits)))
            rows_of = lambda z: self._autodiff_rows(targets, ids, tf.cast(z, tf.float32), ratio)
            logits = _per_sample_capture(self._statistics, rows_of, logits, targets,
                                         row_weights, finite)
        elif on_column_sums is not None:
            # Ignored rows' logits are zeros already (`EqualizationLoss.call`).
            finite = tf.stop_gradient(tf.reduce_all(tf.math.is_finite(logits)))
            logits = self._statistics.capture(
                logits, targets > 0.0, unscale=self._records_upstream(), inputs_finite=finite)
        return self._autodiff_rows(targets, ids, tf.cast(logits, tf.float32), ratio)


class AutodiffSigmoidEQL(_Autodiff, keras_eql.SigmoidEQL):
    def _autodiff_rows(self, targets, ids, logits, ratio):
        return tf.reduce_sum(functional.sigmoid_eql(
            targets, logits, ratio=ratio, objectness=self.objectness,
            **self._weight_options()), -1)


class AutodiffFocalSigmoidEQL(_Autodiff, keras_eql.FocalSigmoidEQL):
    def _autodiff_rows(self, targets, ids, logits, ratio):
        return tf.reduce_sum(functional.focal_sigmoid_eql(
            targets, logits, ratio=ratio, focal_alpha=self.focal_alpha,
            focal_gamma=self.focal_gamma, **self._weight_options()), -1)


class AutodiffSoftmaxEQL(_Autodiff, keras_eql.SoftmaxEQL):
    def _autodiff_rows(self, targets, ids, logits, ratio):
        indicator = tf.stop_gradient(self._indicator_values(ratio))
        return functional.softmax_eql(targets if ids is None else ids, logits,
                                      indicator=indicator, tau=self.tau, eps=self.eps)


class AutodiffEqualizedFocalLoss(_Autodiff, keras_eql.EqualizedFocalLoss):
    def _autodiff_rows(self, targets, ids, logits, ratio):
        return tf.reduce_sum(functional.equalized_focal_loss(
            targets, logits, ratio=ratio, alpha=self.alpha, **self._factor_options()), -1)


class AutodiffEqualizedQualityFocalLoss(_Autodiff, keras_eql.EqualizedQualityFocalLoss):
    def _autodiff_rows(self, targets, ids, logits, ratio):
        return tf.reduce_sum(functional.equalized_quality_focal_loss(
            targets, logits, ratio=ratio, **self._factor_options()), -1)


AUTODIFF = {
    keras_eql.SigmoidEQL: AutodiffSigmoidEQL,
    keras_eql.SoftmaxEQL: AutodiffSoftmaxEQL,
    keras_eql.EqualizedFocalLoss: AutodiffEqualizedFocalLoss,
    keras_eql.EqualizedQualityFocalLoss: AutodiffEqualizedQualityFocalLoss,
    keras_eql.FocalSigmoidEQL: AutodiffFocalSigmoidEQL,
}
