"""The Equalization Losses' rows and their analytic gradient, written once in `keras.ops`.

The path of every backend that cannot run a statistics update in the
backward pass (JAX): each function returns, for dense float32 targets
`(R, K)` and float32 logits `(R, K)`,

* `rows`: the per-row loss `(R,)` (the sigmoid losses summed over the class
  axis, Softmax-EQL per row), differentiable w.r.t. the logits;
* `local`: `d rows_i / d z_ij` `(R, K)`, the analytic derivative, without
  gradient (it feeds only the statistics);
* `positive`: the boolean `(R, K)` mask that splits the statistics into
  positive and negative sums.

`column_sums` turns `local` and per-row coefficients into the `(C,)` sums
`sum_i c_i y_ij |local_ij|` and `sum_i c_i (1 - y_ij) |local_ij|` that the
statistics accumulate; the caller picks `c_i` (the reduction's derivative,
or Sigmoid-EQL's per-sample row weights). The formulas are those of
`keras_eql._fused` (TensorFlow's fused kernels), in log space: finite for
every finite logit.
"""

from keras import backend, ops

from keras_eql import _backend

_MAPPINGS = ("sigmoid", "linear", "square", "sqrt")


def _float32(x):
    return ops.cast(x, "float32")


def softmax_cross_entropy(targets, logits):
    """Per-row softmax cross-entropy of class ids `(...)` or a distribution `(..., C)`.

    Under TensorFlow it is `tf.nn.(sparse_)softmax_cross_entropy_with_logits`
    (`keras_eql.functional.softmax_eql` and the baselines' math use it).
    """
    targets = ops.convert_to_tensor(targets)
    if "int" in backend.standardize_dtype(targets.dtype):
        return _backend.sparse_softmax_cross_entropy(targets, logits)
    return ops.categorical_crossentropy(_float32(targets), logits, from_logits=True)


def sigmoid_cross_entropy(targets, logits):
    """Element-wise sigmoid cross-entropy, `max(z, 0) - z y + log1p(exp(-|z|))`.

    TensorFlow's `sigmoid_cross_entropy_with_logits` (its kernel under
    TensorFlow, so that XLA compiles what it did before), exact in float32
    on every backend: PyTorch's `binary_cross_entropy_with_logits` (Keras's
    `ops.binary_crossentropy` there) adds and subtracts `|z|` and loses up
    to 1e-7 absolute, 2e-4 relative on a small loss.
    """
    if _backend.BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    return ops.relu(logits) - logits * targets + ops.log1p(ops.exp(-ops.abs(logits)))


def sigmoid_eql_weights(ratio, *, gamma=12.0, mu=0.8, alpha=4.0, mapping="sigmoid",
                        reweight_negatives=True, reweight_positives=True):
    """`(q_j, r_j)` of Sigmoid-EQL (Eq. 8-9), as `functional.sigmoid_eql_weights`."""
    ratio = ops.stop_gradient(_float32(ratio))
    if callable(mapping):
        negative = _float32(mapping(ratio))
    elif mapping == "sigmoid":
        negative = ops.sigmoid(gamma * (ratio - mu))
    elif mapping == "linear":
        negative = ratio
    elif mapping == "square":
        negative = ops.square(ratio)
    elif mapping == "sqrt":
        negative = ops.sqrt(ops.maximum(ratio, 0.0))
    else:
        raise ValueError(
            f"sigmoid_eql: unknown mapping={mapping!r}; expected one of {_MAPPINGS} or a callable.")
    negative = ops.clip(negative, 0.0, 1.0)
    positive = 1.0 + alpha * (1.0 - negative)
    if not reweight_positives:
        positive = ops.ones_like(positive)
    if not reweight_negatives:
        negative = ops.ones_like(negative)
    return positive, negative


def _focal_elements(targets, logits, focusing, positive_weight, negative_weight):
    """`E = w_t (1 - p_t)**focusing (-log p_t)` and `dE/dz` for 0/1 targets.

    `w_t` is `positive_weight` on positives, `negative_weight` on negatives
    (`(K,)` vectors or None for 1). With `x = z` on positives and `-z` on
    negatives, `dE/dx = -w_t m (focusing p_t softplus(-x) + q_t)`.
    """
    positive = targets > 0.0
    x = ops.where(positive, logits, -logits)
    neg_log_p_t = ops.softplus(-x)
    modulating = ops.exp(focusing * ops.log_sigmoid(-x))
    weight = None
    if positive_weight is not None:
        weight = ops.where(positive, positive_weight, negative_weight)
    elements = modulating * neg_log_p_t
    x_const = ops.stop_gradient(x)
    slope = -ops.exp(focusing * ops.log_sigmoid(-x_const)) * (
        focusing * ops.sigmoid(x_const) * ops.softplus(-x_const) + ops.sigmoid(-x_const))
    if weight is not None:
        elements, slope = weight * elements, weight * slope
    return elements, ops.where(positive, slope, -slope), positive


def _sigmoid_rows(elements, logits):
    """Row sums of a sigmoid loss's elements, NaN where a logit is NaN or infinite.

    As the TensorFlow kernels and Keras's BCE/BFCE report such a logit, even
    where its element's loss is finite (a `-inf` logit of a negative); the
    statistics then read every logit's finiteness from the rows.
    """
    return ops.sum(ops.where(ops.isfinite(logits), elements, float("nan")), axis=-1)


def sigmoid_eql_rows(targets, logits, *, ratio, objectness=False, **options):
    """Sigmoid-EQL: `E = w_ij BCE(z, y)`, `dE/dz = w_ij (sigmoid(z) - y)`."""
    positive_weights, negative_weights = sigmoid_eql_weights(ratio, **options)
    if objectness:
        one = ops.ones((1,), "float32")
        positive_weights = ops.concatenate([positive_weights, one], 0)
        negative_weights = ops.concatenate([negative_weights, one], 0)
    positive = targets > 0.0
    weights = ops.where(positive, positive_weights, negative_weights)
    x = ops.where(positive, logits, -logits)
    rows = _sigmoid_rows(weights * ops.softplus(-x), logits)
    local = weights * (ops.sigmoid(ops.stop_gradient(logits)) - targets)
    return rows, local, positive


def focal_sigmoid_eql_rows(targets, logits, *, ratio, focal_alpha=0.25, focal_gamma=2.0,
                           **options):
    """FL+EQL: the focal element with Sigmoid-EQL's weights folded into `alpha_t`."""
    positive_weights, negative_weights = sigmoid_eql_weights(ratio, **options)
    if focal_alpha is not None:
        positive_weights = positive_weights * float(focal_alpha)
        negative_weights = negative_weights * (1.0 - float(focal_alpha))
    elements, local, positive = _focal_elements(
        targets, logits, float(focal_gamma), positive_weights, negative_weights)
    return _sigmoid_rows(elements, logits), local, positive


def _focal_factors(ratio, gamma, scale, focusing_factor, weighting_factor):
    """EFL's `gamma_j` (or `gamma`) and `gamma_j / gamma` (or 1), `(C,)` each."""
    class_gamma = gamma + scale * (1.0 - ops.stop_gradient(_float32(ratio)))
    focusing = class_gamma if focusing_factor else ops.full_like(class_gamma, float(gamma))
    weighting = class_gamma / gamma if weighting_factor else ops.ones_like(class_gamma)
    return focusing, weighting


def equalized_focal_loss_rows(targets, logits, *, ratio, alpha=0.25, gamma=2.0, scale=8.0,
                              focusing_factor=True, weighting_factor=True):
    """EFL: `E = alpha_t w_j (1 - p_t)**gamma_j (-log p_t)`."""
    focusing, weighting = _focal_factors(ratio, gamma, scale, focusing_factor, weighting_factor)
    positive_weight, negative_weight = weighting, weighting
    if alpha is not None:
        positive_weight, negative_weight = alpha * weighting, (1.0 - alpha) * weighting
    elements, local, positive = _focal_elements(
        targets, logits, focusing, positive_weight, negative_weight)
    return _sigmoid_rows(elements, logits), local, positive


def equalized_quality_focal_loss_rows(targets, logits, *, ratio, gamma=2.0, scale=8.0,
                                      focusing_factor=True, weighting_factor=True):
    """EQFL: positives (quality `y > 0`) `w_j |y - p|**gamma_j BCE(z, y)`, negatives EFL's.

    At a positive, with `d = p - y`:
    `dE/dz = w_j (gamma_j |d|**gamma_j / d p q BCE + |d|**gamma_j d)`,
    0 where `d = 0` (the loss is 0 there).
    """
    focusing, weighting = _focal_factors(ratio, gamma, scale, focusing_factor, weighting_factor)
    positive = targets > 0.0
    negative_elements, negative_local, _ = _focal_elements(
        ops.zeros_like(targets), logits, focusing, weighting, weighting)
    p = ops.sigmoid(logits)
    bce = targets * ops.softplus(-logits) + (1.0 - targets) * ops.softplus(logits)
    distance = ops.abs(targets - p)
    nonzero = distance > 0.0
    power = ops.where(nonzero, ops.power(ops.where(nonzero, distance, 1.0), focusing), 0.0)
    positive_elements = weighting * power * bce
    # The derivative, from constants (the statistics carry no gradient).
    p_c, bce_c, power_c = (ops.stop_gradient(v) for v in (p, bce, power))
    difference = p_c - targets
    safe = ops.where(nonzero, difference, 1.0)
    positive_local = weighting * (
        ops.where(nonzero, focusing * power_c / safe * p_c * (1.0 - p_c) * bce_c, 0.0)
        + power_c * difference)
    elements = ops.where(positive, positive_elements, negative_elements)
    local = ops.where(positive, positive_local, negative_local)
    return _sigmoid_rows(elements, logits), local, positive


def softmax_eql_rows(targets, logits, *, indicator, tau=1.0, eps=1e-4):
    """Softmax-EQL: cross-entropy of the distribution `targets` on `z + tau log max(I, eps)`.

    `rows_i = sum_j t_ij (logsumexp(a_i) - a_ij)`, `d rows_i / d z_ij =
    softmax(a_i)_j sum_k t_ik - t_ij`.
    """
    offset = tau * ops.log(ops.maximum(ops.stop_gradient(_float32(indicator)), eps))
    adjusted = logits + offset
    log_partition = ops.logsumexp(adjusted, axis=-1, keepdims=True)
    # Only the target's columns: a -inf logit elsewhere adds 0, not 0 * inf
    # (finite, as Keras's SparseCategoricalCrossentropy and the TF kernel).
    rows = ops.sum(ops.where(targets > 0.0, targets * (log_partition - adjusted), 0.0), axis=-1)
    probabilities = ops.softmax(ops.stop_gradient(adjusted), axis=-1)
    local = probabilities * ops.sum(targets, axis=-1, keepdims=True) - targets
    return rows, local, targets > 0.0


def column_sums(local, positive, coefficients, num_classes):
    """`(C,)` sums `sum_i c_i y_ij |local_ij|` and `sum_i c_i (1 - y_ij) |local_ij|`.

    Args:
        local: `(..., K)` derivative of each row's loss.
        positive: boolean `(..., K)` mask of the positives.
        coefficients: `(...)` float32 `c_i >= 0` of the rows.
        num_classes: leading columns with statistics (an objectness column is last).
    """
    width = local.shape[-1]
    magnitude = ops.reshape(ops.abs(local) * coefficients[..., None], (-1, width))
    mask = ops.reshape(positive, (-1, width))
    positive_sum = ops.sum(ops.where(mask, magnitude, 0.0), axis=0)
    negative_sum = ops.sum(ops.where(mask, 0.0, magnitude), axis=0)
    return positive_sum[:num_classes], negative_sum[:num_classes]
