"""Fused row losses: each Equalization Loss and its analytic gradient in one op.

Autodiff through `keras_eql.functional` differentiates every intermediate
(the focal power, the weights, the log-sigmoids) and the statistics identity
then reduces the gradient in separate masked passes. Here each loss is one
`tf.custom_gradient`:

* the forward pass computes the element losses `E` from one `exp(-|z|)` and
  one `log1p` shared by every log-sigmoid, then sums each row;
* the backward pass writes the gradient w.r.t. the logits from `E` itself and
  the sigmoids (one reciprocal, no further exp or log: e.g. for the focal
  losses `dE/dx = -E (gamma_j sigmoid(x) + sigmoid(-x) / softplus(-x))`);
* the statistics, when asked for, come from the same backward pass: with
  integer labels the positives are one gathered element per row and the
  negatives one matrix-vector product with the gradient, so no mask and no
  `|g|` copy of the `(N, K)` gradient is built.

Each function returns the per-ROW loss (the sigmoid losses summed over the
class axis, Softmax-EQL per row) and takes either dense targets `(..., K)` or
integer class ids `(...)`; an id outside `[0, K)` (the background label)
is an all-negative row. Two optional hooks run in the backward pass and
return update ops that the returned gradient depends on:

* `on_gradient(gradient)`: the float32 gradient of the total w.r.t. the
  logits, `(..., K)`.
* `on_column_sums(positive, negative)`: `sum_i y_ij |g_ij|` and
  `sum_i (1 - y_ij) |g_ij|` over the first `num_classes` columns, which is
  what `GradientStatistics` accumulates.

Numerics are those of `keras_eql.functional`: log space, finite loss and
gradient for every finite logit in float32, float16 and bfloat16 (computed in
float32; the gradient is returned in the logits' dtype).
"""

import numpy as np
import tensorflow as tf
from tensorflow.python.ops import gen_nn_ops

from keras_eql import functional

__all__ = [
    "equalized_focal_loss_rows",
    "equalized_quality_focal_loss_rows",
    "sigmoid_eql_rows",
    "softmax_eql_rows",
]


def _float32(x):
    return tf.cast(x, tf.float32)


def _as_rows(x, width):
    """`(..., width)` as `(R, width)` (a free reshape)."""
    return tf.reshape(x, [-1, width])


# -- element math ---------------------------------------------------------------
#
# Everything is written in terms of the signed logit `x = z` for positives and
# `x = -z` for negatives, so that `sigmoid(x)` is the probability of the
# target (`p_t`) and `softplus(-x) = -log p_t`.


def _shared_exp(z):
    """`exp(-|z|)`: the one exponential every other term is derived from."""
    return tf.exp(-tf.abs(z))


def _neg_log_p_t(x, shared):
    """`-log p_t = softplus(-x)`, finite and exact in both tails."""
    return tf.nn.relu(-x) + tf.math.log1p(shared)


def _softplus_pair(x, shared):
    """`softplus(-x)` and `softplus(x)` (`-log p_t`, `-log q_t`) from one log1p."""
    log_term = tf.math.log1p(shared)
    return tf.nn.relu(-x) + log_term, tf.nn.relu(x) + log_term


def _p_t_and_q_t(x, shared):
    """`sigmoid(x)` and `sigmoid(-x)` from `exp(-|x|)`, neither as `1 - other`."""
    reciprocal = 1.0 / (1.0 + shared)
    small = shared * reciprocal
    nonnegative = x >= 0.0
    return tf.where(nonnegative, reciprocal, small), tf.where(nonnegative, small, reciprocal)


def _safe_divide(numerator, denominator, default):
    """`numerator / denominator` where the denominator is non-zero, else `default`."""
    nonzero = tf.not_equal(denominator, 0.0)
    return tf.where(nonzero, numerator / tf.where(nonzero, denominator, 1.0), default)


class _BinaryMath:
    """Element loss `E(x)` and its derivative `dE/dx` of one sigmoid loss.

    `classes` holds per-class `(K,)` vectors; the methods only use
    element-wise operations, so they also work on one gathered element per
    row (`x` of shape `(R,)` and each class vector gathered to `(R,)`).
    """

    def __init__(self, classes):
        self.classes = classes

    def gather(self, index):
        """The same math with every class vector taken at `index` `(R,)`."""
        return type(self)({k: tf.gather(v, index) for k, v in self.classes.items()})

    def loss(self, x, positive, shared):
        raise NotImplementedError

    def gradient(self, x, positive, shared, loss):
        raise NotImplementedError


class _WeightedBCE(_BinaryMath):
    """Sigmoid-EQL: `E = w_t softplus(-x)`, `dE/dx = -w_t sigmoid(-x)`."""

    def _weight(self, positive):
        return tf.where(positive, self.classes["positive"], self.classes["negative"])

    def loss(self, x, positive, shared):
        return self._weight(positive) * _neg_log_p_t(x, shared)

    def gradient(self, x, positive, shared, loss):
        _, q_t = _p_t_and_q_t(x, shared)
        return -self._weight(positive) * q_t


class _Focal(_BinaryMath):
    """EFL (and EQFL with 0/1 targets): `E = w_t exp(-gamma_j softplus(x)) softplus(-x)`.

    `dE/dx = -w_t m (gamma_j p_t softplus(-x) + q_t)`, and since
    `w_t m = E / softplus(-x)` this is `-E (gamma_j p_t + q_t / softplus(-x))`:
    no exponential or logarithm beyond the forward pass's.
    """

    def _weight(self, positive):
        weight = self.classes["weighting"]
        if "alpha_positive" in self.classes:
            weight = weight * tf.where(
                positive, self.classes["alpha_positive"], self.classes["alpha_negative"])
        return weight

    def loss(self, x, positive, shared):
        neg_log_p, neg_log_q = _softplus_pair(x, shared)
        return self._weight(positive) * tf.exp(-self.classes["focusing"] * neg_log_q) * neg_log_p

    def gradient(self, x, positive, shared, loss):
        p_t, q_t = _p_t_and_q_t(x, shared)
        # q_t / softplus(-x) -> 1 as both underflow (x -> inf); E is 0 there.
        tail = _safe_divide(q_t, _neg_log_p_t(x, shared), 1.0)
        return -loss * (self.classes["focusing"] * p_t + tail)


# -- backward pass and statistics -------------------------------------------------


def _column_sum(matrix, weights, width, num_classes):
    """`sum_i weights_i matrix_ij` over the first `num_classes` columns (one matvec)."""
    return tf.linalg.matvec(_as_rows(matrix, width), weights, transpose_a=True)[:num_classes]


def _backward(local, positive, upstream, *, labels, label_local, num_classes,
              on_gradient, on_column_sums):
    """The gradient `local * dy` and the update ops of the hooks.

    For the statistics, every negative's local gradient is `>= 0` (true for
    all four losses), so the negatives' `sum_i |dy_i| |local_ij|` is one
    matrix-vector product with the positives zeroed. The positives are one
    element per row with integer labels (gathered by `label_local`, summed by
    segment), otherwise a second masked matrix-vector product. Nothing is
    subtracted, so small sums keep their relative precision.

    Args:
        local: `(..., K)` float32 derivative of each row's loss w.r.t. its logits.
        positive: boolean `(..., K)` positive mask.
        upstream: `(...)` float32 upstream gradient of the rows.
        labels: `(...)` integer ids for the sparse path, or None.
        label_local: callable from clipped ids `(R,)` to `local` at them `(R,)`.
        num_classes: number of leading columns with statistics.
        on_gradient, on_column_sums: the hooks (module docstring).

    Returns:
        `(gradient, updates)`.
    """
    width = local.shape[-1]
    dy = upstream[..., None]
    if on_column_sums is None:
        gradient = local * dy
        updates = []
    else:
        weights = tf.abs(tf.reshape(upstream, [-1]))
        negatives = tf.where(positive, 0.0, local)
        negative_sum = _column_sum(negatives, weights, width, num_classes)
        if labels is None:
            gradient = local * dy
            positive_sum = _column_sum(
                tf.where(positive, tf.abs(local), 0.0), weights, width, num_classes)
        else:
            flat_labels = tf.reshape(labels, [-1])
            at_label = label_local(tf.clip_by_value(flat_labels, 0, width - 1))
            # Built from `negatives` so that XLA keeps one (N, K) pass.
            gradient = tf.where(
                positive, tf.reshape(at_label, tf.shape(upstream))[..., None], negatives) * dy
            counted = (flat_labels >= 0) & (flat_labels < num_classes)
            # Rows without a counted positive go to an extra, dropped segment.
            segments = tf.where(counted, tf.cast(flat_labels, tf.int32), num_classes)
            positive_sum = tf.math.unsorted_segment_sum(
                tf.abs(at_label) * weights, segments, num_classes + 1)[:num_classes]
        updates = list(on_column_sums(positive_sum, negative_sum))
    if on_gradient is not None:
        updates += list(on_gradient(gradient))
    return gradient, updates


def _with_dependencies(gradient, updates, dtype):
    if updates:
        with tf.control_dependencies(updates):
            gradient = tf.identity(gradient)
    return tf.cast(gradient, dtype)


def _gather_rows(matrix, index):
    """`matrix[i, index_i]` of a `(..., K)` tensor and `(R,)` indices."""
    return tf.gather(_as_rows(matrix, matrix.shape[-1]), index[:, None], batch_dims=1)[:, 0]


# -- the custom gradient of the sigmoid losses --------------------------------------


def _binary_rows(targets, logits, math, *, num_classes, on_gradient, on_column_sums):
    """Row sums of a `_BinaryMath` loss with its fused backward pass."""
    width = logits.shape[-1]
    labels = targets if targets.dtype.is_integer else None
    if labels is not None:
        positive = tf.equal(labels[..., None], tf.range(width, dtype=labels.dtype))
    else:
        positive = _float32(targets) > 0.0
    num_classes = width if num_classes is None else int(num_classes)

    @tf.custom_gradient
    def rows(z):
        z32 = _float32(z)
        x = tf.where(positive, z32, -z32)
        shared = _shared_exp(z32)
        loss = math.loss(x, positive, shared)

        def label_local(index):
            # The label column's derivative again, from gathered inputs.
            at_label = _gather_rows(z32, index)
            return math.gather(index).gradient(
                at_label, True, _shared_exp(at_label), _gather_rows(loss, index))

        def backward(upstream):
            d_x = math.gradient(x, positive, shared, loss)
            gradient, updates = _backward(
                tf.where(positive, d_x, -d_x), positive, _float32(upstream),
                labels=labels, label_local=label_local, num_classes=num_classes,
                on_gradient=on_gradient, on_column_sums=on_column_sums)
            return _with_dependencies(gradient, updates, z.dtype)

        return tf.reduce_sum(loss, -1), backward

    return rows(logits)


# -- public functions -----------------------------------------------------------------


def sigmoid_eql_rows(targets, logits, *, ratio, gamma=12.0, mu=0.8, alpha=4.0,
                     mapping="sigmoid", objectness=False, on_gradient=None,
                     on_column_sums=None):
    """Sigmoid-EQL summed over the class axis, with a fused backward pass.

    Same value as `tf.reduce_sum(functional.sigmoid_eql(...), -1)`; the
    gradient is `w_ij (sigmoid(z_ij) - y_ij)`.

    Args:
        targets: 0/1 float `(..., K)` or integer class ids `(...)`.
        logits: float tensor `(..., K)`.
        ratio: `(C,)` gradient ratio.
        gamma, mu, alpha, mapping, objectness: see `functional.sigmoid_eql`.
        on_gradient, on_column_sums: backward hooks (module docstring); the
            column sums leave the objectness column out.

    Returns:
        float32 row loss `(...)`.
    """
    positive_weights, negative_weights = functional.sigmoid_eql_weights(
        ratio, gamma=gamma, mu=mu, alpha=alpha, mapping=mapping)
    num_classes = positive_weights.shape[0]
    if objectness:
        one = tf.ones([1], tf.float32)
        positive_weights = tf.concat([positive_weights, one], 0)
        negative_weights = tf.concat([negative_weights, one], 0)
    math = _WeightedBCE({"positive": positive_weights, "negative": negative_weights})
    return _binary_rows(targets, logits, math, num_classes=num_classes,
                        on_gradient=on_gradient, on_column_sums=on_column_sums)


def _focal_classes(ratio, gamma, scale, width):
    focusing = gamma + scale * (1.0 - tf.stop_gradient(_float32(ratio)))
    focusing = tf.broadcast_to(focusing, [width])
    return {"focusing": focusing, "weighting": focusing / gamma}


def equalized_focal_loss_rows(targets, logits, *, ratio, alpha=0.25, gamma=2.0,
                              scale=8.0, on_gradient=None, on_column_sums=None):
    """Equalized Focal Loss summed over the class axis, fused backward pass.

    Same value as `tf.reduce_sum(functional.equalized_focal_loss(...), -1)`.

    Args:
        targets: 0/1 float `(..., C)` or integer class ids `(...)`.
        logits: float tensor `(..., C)`.
        ratio: `(C,)` gradient ratio in [0, 1].
        alpha, gamma, scale: see `functional.equalized_focal_loss`.
        on_gradient, on_column_sums: backward hooks (module docstring).

    Returns:
        float32 row loss `(...)`.
    """
    width = logits.shape[-1]
    classes = _focal_classes(ratio, gamma, scale, width)
    if alpha is not None:
        classes["alpha_positive"] = tf.fill([width], float(alpha))
        classes["alpha_negative"] = tf.fill([width], 1.0 - float(alpha))
    return _binary_rows(targets, logits, _Focal(classes), num_classes=None,
                        on_gradient=on_gradient, on_column_sums=on_column_sums)


def equalized_quality_focal_loss_rows(targets, logits, *, ratio, gamma=2.0,
                                      scale=8.0, on_gradient=None,
                                      on_column_sums=None):
    """Equalized Quality Focal Loss summed over the class axis, fused backward.

    Same value as `tf.reduce_sum(functional.equalized_quality_focal_loss(...), -1)`.
    Integer ids mean quality 1, where EQFL is EFL without `alpha`; dense
    quality scores use `_quality_focal_rows`.

    Args:
        targets: quality scores in [0, 1] `(..., C)` or integer ids `(...)`.
        logits: float tensor `(..., C)`.
        ratio: `(C,)` gradient ratio in [0, 1].
        gamma, scale: see `functional.equalized_quality_focal_loss`.
        on_gradient, on_column_sums: backward hooks (module docstring).

    Returns:
        float32 row loss `(...)`.
    """
    classes = _focal_classes(ratio, gamma, scale, logits.shape[-1])
    if targets.dtype.is_integer:
        return _binary_rows(targets, logits, _Focal(classes), num_classes=None,
                            on_gradient=on_gradient, on_column_sums=on_column_sums)
    return _quality_focal_rows(_float32(targets), logits, classes,
                               on_gradient=on_gradient, on_column_sums=on_column_sums)


def _quality_focal_rows(targets, logits, classes, *, on_gradient, on_column_sums):
    """EQFL with dense quality targets.

    `E = w_j m BCE(z, y)`, `m = |y - p|**gamma_j` (for negatives `p**gamma_j`,
    as `exp(gamma_j log p)` in log space), and
    `dE/dz = E (gamma_j p q / (p - y) + (p - y) / BCE)`; for negatives the
    first term is `gamma_j q`.
    """
    focusing, weighting = classes["focusing"], classes["weighting"]
    positive = targets > 0.0

    @tf.custom_gradient
    def rows(z):
        z32 = _float32(z)
        shared = _shared_exp(z32)
        neg_log_p, neg_log_q = _softplus_pair(z32, shared)
        bce = targets * neg_log_p + (1.0 - targets) * neg_log_q
        p, q = _p_t_and_q_t(z32, shared)
        difference = p - targets
        log_modulating = tf.where(positive, tf.math.log(tf.abs(difference)), -neg_log_p)
        loss = weighting * tf.exp(focusing * log_modulating) * bce

        def backward(upstream):
            focal = tf.where(positive, _safe_divide(p * q, difference, 0.0), q)
            local = loss * (focusing * focal + _safe_divide(difference, bce, 0.0))
            gradient, updates = _backward(
                local, positive, _float32(upstream), labels=None, label_local=None,
                num_classes=local.shape[-1], on_gradient=on_gradient,
                on_column_sums=on_column_sums)
            return _with_dependencies(gradient, updates, z.dtype)

        return tf.reduce_sum(loss, -1), backward

    return rows(logits)


def softmax_eql_rows(targets, logits, *, indicator, tau=1.0, eps=1e-4,
                     on_gradient=None, on_column_sums=None):
    """Per-row Softmax-EQL, `logsumexp(z + o) - (z + o)_y` with `o = tau log c`.

    Integer labels take `_sparse_softmax_rows`; a dense target distribution
    takes TF's softmax cross-entropy kernel, which returns the loss together
    with `softmax(z + o) - y`.

    Args:
        targets: integer class ids `(...)` in `[0, C)`, or a float
            distribution `(..., C)`.
        logits: float tensor `(..., C)`.
        indicator: `(C,)` per-class indicator.
        tau, eps: see `functional.softmax_eql`.
        on_gradient, on_column_sums: backward hooks (module docstring).

    Returns:
        float32 row loss `(...)`.
    """
    width = logits.shape[-1]
    offset = tau * tf.math.log(tf.maximum(tf.stop_gradient(_float32(indicator)), eps))
    if targets.dtype.is_integer:
        return _sparse_softmax_rows(targets, logits, offset, on_gradient=on_gradient,
                                    on_column_sums=on_column_sums)
    distribution = _as_rows(_float32(targets), width)

    @tf.custom_gradient
    def rows(z):
        loss, local = gen_nn_ops.softmax_cross_entropy_with_logits(
            features=_as_rows(_float32(z), width) + offset, labels=distribution)

        def backward(upstream):
            gradient, updates = _backward(
                local, distribution > 0.0, tf.reshape(_float32(upstream), [-1]),
                labels=None, label_local=None, num_classes=width,
                on_gradient=on_gradient, on_column_sums=on_column_sums)
            gradient = _with_dependencies(gradient, updates, z.dtype)
            return tf.reshape(gradient, tf.shape(z))

        return tf.reshape(loss, tf.shape(z)[:-1]), backward

    return rows(logits)


def _sparse_softmax_rows(labels, logits, offset, *, on_gradient, on_column_sums):
    """Softmax cross-entropy with integer labels, written for one (N, C) pass.

    The exponentials of the non-label columns, `others`, are the only
    `(N, C)` intermediate: their row sum plus the gathered label term is the
    partition function, `others / total` is the gradient of the negatives
    and the matrix-vector product of `others` with `|dy| / total` their
    statistics; the label's gradient `-sum(others) / total` needs no `1 - p`.

    The shift is `max_j z_ij + max_j o_j` (no `(N, C)` sum needed for the row
    maximum), lowered by up to `80 - log C` when the offsets spread, so that
    the largest term stays within [1, e^80] as with the exact maximum.
    """
    width = logits.shape[-1]
    flat_labels = tf.reshape(labels, [-1])
    index = tf.clip_by_value(flat_labels, 0, width - 1)
    positive = tf.equal(flat_labels[:, None], tf.range(width, dtype=flat_labels.dtype))
    offset_max = tf.reduce_max(offset)
    headroom = tf.minimum(offset_max - tf.reduce_min(offset),
                          80.0 - float(np.log(width)))
    label_offset = tf.gather(offset, index)

    @tf.custom_gradient
    def rows(z):
        z2 = _as_rows(_float32(z), width)
        shift = tf.reduce_max(z2, -1) + (offset_max - headroom)
        label_logit = _gather_rows(z2, index) + label_offset - shift
        others = tf.where(positive, 0.0, tf.exp(z2 + offset - shift[:, None]))
        others_sum = tf.reduce_sum(others, -1)
        label_term = tf.exp(label_logit)
        total = others_sum + label_term
        # log1p keeps a small loss precise; log(total) - label_logit covers
        # a label term that underflows (a loss above ~80).
        odds = others_sum / tf.where(label_term > 0.0, label_term, 1.0)
        loss = tf.where((label_term > 0.0) & (odds < 1e30), tf.math.log1p(odds),
                        tf.math.log(total) - label_logit)

        def backward(upstream):
            upstream = tf.reshape(_float32(upstream), [-1])
            scale = upstream / total
            label_local = -others_sum / total
            gradient = tf.where(
                positive, (label_local * upstream)[:, None], others * scale[:, None])
            updates = []
            if on_column_sums is not None:
                magnitude = tf.abs(upstream)
                segments = tf.cast(index, tf.int32)
                updates += list(on_column_sums(
                    tf.math.unsorted_segment_sum(
                        tf.abs(label_local) * magnitude, segments, width),
                    tf.linalg.matvec(others, magnitude / total, transpose_a=True)))
            if on_gradient is not None:
                updates += list(on_gradient(gradient))
            gradient = _with_dependencies(gradient, updates, z.dtype)
            return tf.reshape(gradient, tf.shape(z))

        return tf.reshape(loss, tf.shape(z)[:-1]), backward

    return rows(logits)
