"""Fused row losses: each Equalization Loss and its analytic gradient in one op.

Autodiff through `keras_eql.functional` differentiates every intermediate
(the focal power, the weights, the log-sigmoids) and the statistics identity
then reduces the gradient in separate masked passes. Here each loss is one
`tf.custom_gradient`:

* the forward pass computes the element losses `E` from one `exp(-|z|)` and
  one `log1p` (as a `log`, see `_log1p`) shared by every log-sigmoid, then
  sums each row;
* the backward pass writes the gradient w.r.t. the logits from `E` itself and
  the sigmoids (one reciprocal, no further exp or log: e.g. for the focal
  losses `dE/dx = -E (gamma_j sigmoid(x) + sigmoid(-x) / softplus(-x))`);
* the statistics, when asked for, come from the same backward pass: the
  positives are one gathered element per row, summed by segment, and the
  negatives one matrix-vector product of `|dy|` with the negatives' local
  gradients; nothing is subtracted, so small sums keep their precision.

Each function returns the per-ROW loss (the sigmoid losses summed over the
class axis, Softmax-EQL per row) and takes either dense targets `(..., K)` or
integer class ids `(...)`; an id outside `[0, K)` (the background label)
is an all-negative row. Integer ids are compared with a class iota, never
turned into a float one-hot. Dense targets with at most one positive per row
(one-hot, one-hot times an IoU score) are recognised by one matrix product
and take the same path as ids; other dense targets take a general path.
Two optional hooks run in the backward pass and return update ops that the
returned gradient depends on:

* `on_gradient(gradient)`: the float32 gradient of the total w.r.t. the
  logits, `(..., K)`.
* `on_column_sums(positive, negative)`: `sum_i y_ij |g_ij|` and
  `sum_i (1 - y_ij) |g_ij|` over the first `num_classes` columns, which is
  what `GradientStatistics` accumulates. By default `g` is the gradient of
  the total (`|dy_i| |dE_ij/dz_ij|`, `dy` the rows' upstream gradient). The
  sigmoid losses also take `row_weights` `(...)`: then `g_ij = row_weights_i
  dE_ij/dz_ij`, the gradient of the weighted plain sum over the rows, with
  no reduction normaliser (Sigmoid-EQL's statistics, as the authors collect
  them); a non-finite upstream gradient still makes the sums NaN, so that
  the statistics drop a step whose gradient overflowed.

Numerics are those of `keras_eql.functional`: log space, finite loss and
gradient for every finite logit in float32, float16 and bfloat16 (computed in
float32; the gradient is returned in the logits' dtype).
"""

import numpy as np
import tensorflow as tf
from tensorflow.python.ops import gen_nn_ops

from keras_eql import functional
from keras_eql._targets import single_positive_ids

__all__ = [
    "equalized_focal_loss_rows",
    "equalized_quality_focal_loss_rows",
    "focal_sigmoid_eql_rows",
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


def _log1p(e):
    """`log(1 + e)` for `e` in [0, 1], within a few ulp.

    Goldberg's `log(u) * e / (u - 1)`, `u = 1 + e`: the division undoes the
    rounding of `u`. XLA's CPU `log1p` costs about three `log`s; this one
    `log` and one division.
    """
    u = 1.0 + e
    return tf.where(tf.equal(u, 1.0), e, tf.math.log(u) * (e / (u - 1.0)))


def _neg_log_p_t(x, shared):
    """`-log p_t = softplus(-x)`, finite and exact in both tails."""
    return tf.nn.relu(-x) + _log1p(shared)


def _softplus_pair(x, shared):
    """`softplus(-x)` and `softplus(x)` (`-log p_t`, `-log q_t`) from one log1p."""
    log_term = _log1p(shared)
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
    """EFL, EQFL with 0/1 targets, FL+EQL: `E = w_t exp(-gamma_j softplus(x)) softplus(-x)`.

    `w_t` is the product of the optional class vectors `weighting` (both
    sides: EFL's `gamma_j / gamma_b`) and `positive_weight` /
    `negative_weight` (one side each: `alpha_t`, times Sigmoid-EQL's `q_j` /
    `r_j` for FL+EQL); an absent vector is a factor of 1, not a multiply.

    `dE/dx = -w_t m (gamma_j p_t softplus(-x) + q_t)`, and since
    `w_t m = E / softplus(-x)` this is `-E (gamma_j p_t + q_t / softplus(-x))`:
    no exponential or logarithm beyond the forward pass's.
    """

    def _weight(self, positive):
        weight = None
        if "positive_weight" in self.classes:
            weight = tf.where(
                positive, self.classes["positive_weight"], self.classes["negative_weight"])
        weighting = self.classes.get("weighting")
        if weighting is not None:
            weight = weighting if weight is None else weighting * weight
        return weight

    def loss(self, x, positive, shared):
        neg_log_p, neg_log_q = _softplus_pair(x, shared)
        modulating = tf.exp(-self.classes["focusing"] * neg_log_q)
        weight = self._weight(positive)
        if weight is not None:
            modulating = weight * modulating
        return modulating * neg_log_p

    def gradient(self, x, positive, shared, loss):
        p_t, q_t = _p_t_and_q_t(x, shared)
        # q_t / softplus(-x) -> 1 as both underflow (x -> inf); E is 0 there.
        tail = _safe_divide(q_t, _neg_log_p_t(x, shared), 1.0)
        return -loss * (self.classes["focusing"] * p_t + tail)


class _QualityFocal:
    """EQFL at a positive of quality `y` in (0, 1]: `E = w_j |y - p|**gamma_j BCE(z, y)`.

    `w_j` is the class vector `weighting`; without it, 1.

    `dE/dz = E (gamma_j p q / (p - y) + (p - y) / BCE)`. Element-wise in `z`
    (not the signed `x`) with `(K,)` or gathered class vectors, like
    `_BinaryMath`.
    """

    def __init__(self, classes):
        self.classes = classes

    def gather(self, index):
        return _QualityFocal({k: tf.gather(v, index) for k, v in self.classes.items()})

    def _parts(self, z, quality, shared):
        neg_log_p, neg_log_q = _softplus_pair(z, shared)
        p, q = _p_t_and_q_t(z, shared)
        return quality * neg_log_p + (1.0 - quality) * neg_log_q, p, q

    def loss(self, z, quality, shared):
        bce, p, _ = self._parts(z, quality, shared)
        modulating = tf.exp(self.classes["focusing"] * tf.math.log(tf.abs(p - quality)))
        if "weighting" in self.classes:
            modulating = self.classes["weighting"] * modulating
        return modulating * bce

    def gradient(self, z, quality, shared, loss):
        bce, p, q = self._parts(z, quality, shared)
        difference = p - quality
        # Where p == y the loss is 0 and so is every term.
        return loss * (self.classes["focusing"] * _safe_divide(p * q, difference, 0.0)
                       + _safe_divide(difference, bce, 0.0))


# -- statistics and the returned gradient --------------------------------------------


def _column_sum(matrix, weights, num_classes):
    """`sum_i weights_i matrix_ij` over the first `num_classes` columns (one matvec)."""
    return tf.linalg.matvec(matrix, weights, transpose_a=True)[:num_classes]


def _gradient_and_sums(local, positive, upstream, weights, *, labels, at_label, num_classes,
                       sums):
    """The gradient `local * dy` and, if `sums`, what the column sums need.

    Every negative's local gradient is `>= 0` (true for all four losses), so
    the negatives' `sum_i |dy_i| |local_ij|` is one matrix-vector product
    (`_negative_sum`) of the local gradients with the positives zeroed. With
    labels the positives are one element per row (`at_label`, summed by
    segment), otherwise a masked column reduction.

    Args:
        local: `(R, K)` float32 derivative of each row's loss w.r.t. its logits.
        positive: boolean `(R, K)` positive mask.
        upstream: `(R,)` float32 upstream gradient of the rows.
        weights: `(R,)` non-negative float32 row weights of the column sums
            (`|upstream|`, or the statistics' own `row_weights`).
        labels: `(R,)` integer ids, or None.
        at_label: `(R,)` `local` at each row's label (any value for rows whose
            id is out of range), or None.
        num_classes: number of leading columns with statistics.
        sums: whether to prepare the column sums (else the sum is zeros and
            `negatives` None).

    Returns:
        `(gradient, positive_sum, negatives)`: `negatives` is the `(R, K)`
        operand of `_negative_sum`.
    """
    dy = upstream[:, None]
    if not sums:
        return local * dy, tf.zeros([num_classes]), None
    negatives = tf.where(positive, 0.0, local)
    if labels is None:
        # A column reduction, not a matrix-vector product: this runs inside
        # `_binary_rows`'s `tf.cond` (see `_negative_sum`).
        positive_sum = tf.reduce_sum(
            tf.where(positive, tf.abs(local), 0.0) * weights[:, None], 0)[:num_classes]
        return local * dy, positive_sum, negatives
    # Divided by an exact 1 that XLA cannot see through (`_opaque_one`): the
    # division makes `negatives` a fusion XLA will not copy into the
    # gradient's, so the gradient reads it instead of recomputing `local`,
    # and the divisions inside `local` keep one consumer and stay fused
    # rather than written out for two (EFL on 512 x 1203: 6 (N, C) writes
    # and 18 reads instead of 8 and 32).
    negatives = negatives / _opaque_one(labels)
    # Rebuilt from `negatives` so that XLA writes the gradient in one pass.
    gradient = tf.where(positive, at_label[:, None], negatives) * dy
    counted = (labels >= 0) & (labels < num_classes)
    # Rows without a counted positive go to an extra segment, dropped.
    segments = tf.where(counted, tf.cast(labels, tf.int32), num_classes)
    positive_sum = tf.math.unsorted_segment_sum(
        tf.abs(at_label) * weights, segments, num_classes + 1)[:num_classes]
    return gradient, positive_sum, negatives


def _opaque_one(labels):
    """The float32 scalar 1, computed from the labels so that no compiler can fold it.

    `(max(labels) | 1) & 1` is 1 for every integer (the empty maximum
    included); dividing by it changes no value.
    """
    top = tf.reduce_max(labels)
    return tf.cast(tf.bitwise.bitwise_and(tf.bitwise.bitwise_or(top, 1), 1), tf.float32)


def _negative_sum(negatives, weights, num_classes):
    """The negatives' column sums, `sum_i weights_i negatives_ij` (zeros without `negatives`).

    Kept out of any `tf.cond` branch: there XLA fuses the `(R, K)` operand
    into a naive matrix-vector loop (3x the whole loss at 512 x 1203);
    outside, the product feeds the statistics' add and stays a fast `dot`.
    """
    if negatives is None:
        return tf.zeros([num_classes])
    return _column_sum(negatives, weights, num_classes)


def _sum_weights(upstream, row_weights):
    """Row weights of the column sums: `|upstream|`, or `row_weights` (NaN if the upstream is not finite)."""
    if row_weights is None:
        return tf.abs(upstream)
    # One reduction over the rows: an overflowed loss scale or a NaN elsewhere
    # in the total must drop the step, as it does for upstream-weighted sums.
    finite = tf.math.is_finite(tf.reduce_sum(upstream))
    return tf.where(finite, tf.abs(_float32(row_weights)), np.nan)


def _run_hooks(gradient, positive_sum, negative_sum, on_gradient, on_column_sums):
    updates = []
    if on_column_sums is not None:
        updates += list(on_column_sums(positive_sum, negative_sum))
    if on_gradient is not None:
        updates += list(on_gradient(gradient))
    return updates


def _with_dependencies(gradient, updates, dtype):
    if updates:
        with tf.control_dependencies(updates):
            gradient = tf.identity(gradient)
    return tf.cast(gradient, dtype)


def _nan_unless_finite(loss, z):
    """`loss` with NaN where the logit is NaN or infinite.

    As Keras's own BCE and focal losses report a non-finite logit (a NaN
    loss; a finite logit is unaffected). It also lets the backward pass see
    every logit's finiteness in the rows' loss, an `(R,)` vector, instead of
    reading the `(R, K)` logits once more (`_binary_rows`).
    """
    return tf.where(tf.math.is_finite(z), loss, np.nan)


def _gather_rows(matrix, index):
    """`matrix[i, index_i]` of an `(R, K)` tensor and `(R,)` indices."""
    return tf.gather(matrix, index[:, None], batch_dims=1)[:, 0]


# -- the two paths of the sigmoid losses ------------------------------------------------


class _LabelPath:
    """Targets as one id per row (and, for EQFL, the quality at that id)."""

    def __init__(self, labels, quality, math, quality_math):
        self.labels, self.quality = labels, quality
        self.math, self.quality_math = math, quality_math

    def _setup(self, z):
        width = z.shape[-1]
        self.index = tf.clip_by_value(self.labels, 0, width - 1)
        self.positive = tf.equal(self.labels[:, None], tf.range(width, dtype=self.labels.dtype))
        self.at_z = _gather_rows(z, self.index)

    def forward(self, z):
        self._setup(z)
        loss = self.math.loss(tf.where(self.positive, z, -z), self.positive, _shared_exp(z))
        if self.quality is not None:
            at_loss = self.quality_math.gather(self.index).loss(
                self.at_z, self.quality, _shared_exp(self.at_z))
            loss = tf.where(self.positive, at_loss[:, None], loss)
        return _nan_unless_finite(loss, z)

    def backward(self, z, loss, upstream, weights, num_classes, sums):
        self._setup(z)
        x = tf.where(self.positive, z, -z)
        d_x = self.math.gradient(x, self.positive, _shared_exp(z), loss)
        local = tf.where(self.positive, d_x, -d_x)
        # The label column's derivative from gathered inputs, so that XLA
        # keeps the (R, K) gradient a single fusion.
        at_loss, at_shared = _gather_rows(loss, self.index), _shared_exp(self.at_z)
        if self.quality is None:
            at_label = self.math.gather(self.index).gradient(self.at_z, True, at_shared, at_loss)
        else:
            at_label = self.quality_math.gather(self.index).gradient(
                self.at_z, self.quality, at_shared, at_loss)
            local = tf.where(self.positive, at_label[:, None], local)
        return _gradient_and_sums(local, self.positive, upstream, weights, labels=self.labels,
                                  at_label=at_label, num_classes=num_classes, sums=sums)


class _DensePath:
    """Any dense targets: positives where the target is > 0."""

    def __init__(self, targets, math, quality_math):
        self.targets, self.math, self.quality_math = targets, math, quality_math

    def forward(self, z):
        # The mask is built here, inside the branch: only this path reads it.
        positive, shared = self.targets > 0.0, _shared_exp(z)
        if self.quality_math is None:
            loss = self.math.loss(tf.where(positive, z, -z), positive, shared)
        else:
            loss = tf.where(positive, self.quality_math.loss(z, self.targets, shared),
                            self.math.loss(-z, False, shared))
        return _nan_unless_finite(loss, z)

    def backward(self, z, loss, upstream, weights, num_classes, sums):
        positive, shared = self.targets > 0.0, _shared_exp(z)
        if self.quality_math is None:
            d_x = self.math.gradient(tf.where(positive, z, -z), positive, shared, loss)
            local = tf.where(positive, d_x, -d_x)
        else:
            local = tf.where(positive,
                             self.quality_math.gradient(z, self.targets, shared, loss),
                             -self.math.gradient(-z, False, shared, loss))
        return _gradient_and_sums(local, positive, upstream, weights, labels=None, at_label=None,
                                  num_classes=num_classes, sums=sums)


def _binary_rows(targets, logits, math, *, quality_math=None, quality=None, num_classes=None,
                 on_gradient, on_column_sums, row_weights=None):
    """Row sums of a sigmoid loss with its fused backward pass.

    Args:
        targets: integer ids `(...)` or dense targets `(..., K)`.
        logits: `(..., K)`.
        math: `_BinaryMath` of the loss (of the negatives only for EQFL).
        quality_math: `_QualityFocal` for EQFL's positives, else None.
        quality: with integer ids, optional `(...)` quality of each row's
            positive (EQFL; with `quality_math`), else quality 1.
        num_classes: leading columns with statistics (default K).
        on_gradient, on_column_sums: the hooks (module docstring).
        row_weights: optional `(...)` weights of the column sums in place of
            the upstream gradient (module docstring).
    """
    width = logits.shape[-1]
    num_classes = width if num_classes is None else int(num_classes)
    sums = on_column_sums is not None
    if targets.dtype.is_integer:
        single = None
        if quality is not None:
            quality = tf.reshape(_float32(quality), [-1])
        paths = [_LabelPath(tf.reshape(targets, [-1]), quality, math,
                            quality_math if quality is not None else None)]
    else:
        dense = _as_rows(_float32(targets), width)
        labels, values, single = single_positive_ids(dense)
        single = tf.reduce_all(single)
        quality = values if quality_math is not None else None
        paths = [_LabelPath(labels, quality, math, quality_math),
                 _DensePath(dense, math, quality_math)]

    def either(run):
        """`run(path)` on the label path, or on the dense path if a row has two positives."""
        if single is None:
            return run(paths[0])
        return tf.cond(single, lambda: run(paths[0]), lambda: run(paths[1]))

    @tf.custom_gradient
    def rows(z):
        z2 = _as_rows(_float32(z), width)
        loss = either(lambda path: path.forward(z2))
        row_loss = tf.reduce_sum(loss, -1)

        def backward(upstream):
            upstream = tf.reshape(_float32(upstream), [-1])
            weights = None
            if sums:
                weights = _sum_weights(upstream, None if row_weights is None
                                       else tf.reshape(row_weights, [-1]))
                # A NaN or infinite logit made its row's loss NaN (a row sum of
                # 1e38s overflows too, the safe side): the step adds nothing.
                # Read from the `(R,)` rows, so the logits are not read once
                # more; `is_finite` per row keeps XLA from folding a sum of the
                # row sums into a second pass over the `(R, K)` loss.
                rows_finite = tf.reduce_all(tf.math.is_finite(row_loss))
                weights = tf.where(rows_finite, weights, np.nan)
            gradient, positive_sum, negatives = either(
                lambda path: path.backward(z2, loss, upstream, weights, num_classes, sums))
            negative_sum = _negative_sum(negatives, weights, num_classes)
            updates = _run_hooks(gradient, positive_sum, negative_sum, on_gradient, on_column_sums)
            gradient = _with_dependencies(gradient, updates, z.dtype)
            return tf.reshape(gradient, tf.shape(z))

        return tf.reshape(row_loss, tf.shape(z)[:-1]), backward

    return rows(logits)


# -- public functions -----------------------------------------------------------------


def sigmoid_eql_rows(targets, logits, *, ratio, gamma=12.0, mu=0.8, alpha=4.0,
                     mapping="sigmoid", objectness=False, reweight_negatives=True,
                     reweight_positives=True, on_gradient=None, on_column_sums=None,
                     row_weights=None):
    """Sigmoid-EQL summed over the class axis, with a fused backward pass.

    Same value as `tf.reduce_sum(functional.sigmoid_eql(...), -1)`; the
    gradient is `w_ij (sigmoid(z_ij) - y_ij)`.

    Args:
        targets: 0/1 float `(..., K)` or integer class ids `(...)`.
        logits: float tensor `(..., K)`.
        ratio: `(C,)` gradient ratio.
        gamma, mu, alpha, mapping, objectness, reweight_negatives,
            reweight_positives: see `functional.sigmoid_eql`.
        on_gradient, on_column_sums: backward hooks (module docstring); the
            column sums leave the objectness column out.
        row_weights: optional `(...)` row weights of the column sums
            (module docstring): `SigmoidEQL` passes the sample weights of
            the counted rows, so that its sums are the authors'
            `sum_i s_i w_ij |sigmoid(z_ij) - y_ij|`.

    Returns:
        float32 row loss `(...)`.
    """
    positive_weights, negative_weights = functional.sigmoid_eql_weights(
        ratio, gamma=gamma, mu=mu, alpha=alpha, mapping=mapping,
        reweight_negatives=reweight_negatives, reweight_positives=reweight_positives)
    num_classes = positive_weights.shape[0]
    if objectness:
        one = tf.ones([1], tf.float32)
        positive_weights = tf.concat([positive_weights, one], 0)
        negative_weights = tf.concat([negative_weights, one], 0)
    math = _WeightedBCE({"positive": positive_weights, "negative": negative_weights})
    return _binary_rows(targets, logits, math, num_classes=num_classes,
                        on_gradient=on_gradient, on_column_sums=on_column_sums,
                        row_weights=row_weights)


def _focal_classes(ratio, gamma, scale, width, focusing_factor, weighting_factor):
    """EFL's class vectors: `focusing` `gamma_j` (or `gamma`), `weighting` `gamma_j / gamma` (or none)."""
    class_gamma = gamma + scale * (1.0 - tf.stop_gradient(_float32(ratio)))
    class_gamma = tf.broadcast_to(class_gamma, [width])
    classes = {"focusing": class_gamma if focusing_factor else tf.fill([width], float(gamma))}
    if weighting_factor:
        classes["weighting"] = class_gamma / gamma
    return classes


def equalized_focal_loss_rows(targets, logits, *, ratio, alpha=0.25, gamma=2.0,
                              scale=8.0, focusing_factor=True, weighting_factor=True,
                              on_gradient=None, on_column_sums=None):
    """Equalized Focal Loss summed over the class axis, fused backward pass.

    Same value as `tf.reduce_sum(functional.equalized_focal_loss(...), -1)`.

    Args:
        targets: 0/1 float `(..., C)` or integer class ids `(...)`.
        logits: float tensor `(..., C)`.
        ratio: `(C,)` gradient ratio in [0, 1].
        alpha, gamma, scale, focusing_factor, weighting_factor: see
            `functional.equalized_focal_loss`.
        on_gradient, on_column_sums: backward hooks (module docstring).

    Returns:
        float32 row loss `(...)`.
    """
    width = logits.shape[-1]
    classes = _focal_classes(ratio, gamma, scale, width, focusing_factor, weighting_factor)
    if alpha is not None:
        classes["positive_weight"] = tf.fill([width], float(alpha))
        classes["negative_weight"] = tf.fill([width], 1.0 - float(alpha))
    return _binary_rows(targets, logits, _Focal(classes),
                        on_gradient=on_gradient, on_column_sums=on_column_sums)


def equalized_quality_focal_loss_rows(targets, logits, *, ratio, gamma=2.0,
                                      scale=8.0, focusing_factor=True,
                                      weighting_factor=True, on_gradient=None,
                                      on_column_sums=None, quality=None):
    """Equalized Quality Focal Loss summed over the class axis, fused backward.

    Same value as `tf.reduce_sum(functional.equalized_quality_focal_loss(...), -1)`.
    Negatives are EFL's without `alpha`; so are positives of quality 1
    (integer ids without `quality`).

    Args:
        targets: quality scores in [0, 1] `(..., C)` or integer ids `(...)`.
        logits: float tensor `(..., C)`.
        ratio: `(C,)` gradient ratio in [0, 1].
        gamma, scale, focusing_factor, weighting_factor: see
            `functional.equalized_quality_focal_loss`.
        on_gradient, on_column_sums: backward hooks (module docstring).
        quality: with integer ids, optional `(...)` quality in (0, 1] of each
            row's positive (the dense targets' value at the id); else 1.

    Returns:
        float32 row loss `(...)`.
    """
    classes = _focal_classes(ratio, gamma, scale, logits.shape[-1], focusing_factor,
                             weighting_factor)
    graded = not targets.dtype.is_integer or quality is not None
    quality_math = _QualityFocal(classes) if graded else None
    return _binary_rows(targets, logits, _Focal(classes), quality_math=quality_math,
                        quality=quality, on_gradient=on_gradient,
                        on_column_sums=on_column_sums)


def focal_sigmoid_eql_rows(targets, logits, *, ratio, focal_alpha=0.25, focal_gamma=2.0,
                           gamma=12.0, mu=0.8, alpha=4.0, mapping="sigmoid",
                           reweight_negatives=True, reweight_positives=True,
                           on_gradient=None, on_column_sums=None, row_weights=None):
    """FL+EQL summed over the class axis, with a fused backward pass.

    Same value as `tf.reduce_sum(functional.focal_sigmoid_eql(...), -1)`: EFL's
    focal element math with a fixed `focal_gamma` and Sigmoid-EQL's weights
    folded into `alpha_t`.

    Args:
        targets: 0/1 float `(..., C)` or integer class ids `(...)`.
        logits: float tensor `(..., C)`.
        ratio: `(C,)` gradient ratio (Sigmoid-EQL's, not clipped).
        focal_alpha, focal_gamma, gamma, mu, alpha, mapping,
            reweight_negatives, reweight_positives: see
            `functional.focal_sigmoid_eql`.
        on_gradient, on_column_sums: backward hooks (module docstring).
        row_weights: optional `(...)` row weights of the column sums, as in
            `sigmoid_eql_rows`.

    Returns:
        float32 row loss `(...)`.
    """
    width = logits.shape[-1]
    positive_weights, negative_weights = functional.sigmoid_eql_weights(
        ratio, gamma=gamma, mu=mu, alpha=alpha, mapping=mapping,
        reweight_negatives=reweight_negatives, reweight_positives=reweight_positives)
    if focal_alpha is not None:
        positive_weights = positive_weights * float(focal_alpha)
        negative_weights = negative_weights * (1.0 - float(focal_alpha))
    classes = {"focusing": tf.fill([width], float(focal_gamma)),
               "positive_weight": tf.broadcast_to(positive_weights, [width]),
               "negative_weight": tf.broadcast_to(negative_weights, [width])}
    return _binary_rows(targets, logits, _Focal(classes), on_gradient=on_gradient,
                        on_column_sums=on_column_sums, row_weights=row_weights)


def softmax_eql_rows(targets, logits, *, indicator, tau=1.0, eps=1e-4,
                     on_gradient=None, on_column_sums=None):
    """Per-row Softmax-EQL, `logsumexp(z + o) - (z + o)_y` with `o = tau log c`.

    Integer labels take `_sparse_softmax_rows`; a dense target distribution
    takes TF's softmax cross-entropy kernel, which returns the loss together
    with `softmax(z + o) - y`.

    Args:
        targets: integer class ids `(...)` in `[0, C)` (an id outside gives
            a finite but meaningless row: `EqualizationLoss` validates the
            ids and turns a step with one into a NaN loss with zero
            gradient), or a float distribution `(..., C)`.
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
            upstream = tf.reshape(_float32(upstream), [-1])
            weights = tf.abs(upstream)
            gradient, positive_sum, negatives = _gradient_and_sums(
                local, distribution > 0.0, upstream, weights,
                labels=None, at_label=None, num_classes=width, sums=on_column_sums is not None)
            negative_sum = _negative_sum(negatives, weights, width)
            updates = _run_hooks(gradient, positive_sum, negative_sum, on_gradient, on_column_sums)
            return tf.reshape(_with_dependencies(gradient, updates, z.dtype), tf.shape(z))

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
            positive_sum = negative_sum = None
            if on_column_sums is not None:
                weights = tf.abs(scale)
                positive_sum = tf.math.unsorted_segment_sum(
                    tf.abs(label_local * upstream), tf.cast(index, tf.int32), width)
                negative_sum = _column_sum(others, weights, width)
            updates = _run_hooks(gradient, positive_sum, negative_sum, on_gradient, on_column_sums)
            return tf.reshape(_with_dependencies(gradient, updates, z.dtype), tf.shape(z))

        return tf.reshape(loss, tf.shape(z)[:-1]), backward

    return rows(logits)
