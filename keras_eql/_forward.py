"""The losses' call on backends whose statistics are updated in the forward pass (JAX, PyTorch).

Under TensorFlow the fused kernels (`keras_eql._fused`) add the statistics in
the backward pass. A JAX training step has no side effects in its backward
pass, so here (and under PyTorch, which shares the path: the math is written
once) the loss computes, in `keras.ops`, its rows, their analytic
derivative (`keras_eql._rows`) and the derivative of Keras's reduction, and
adds the per-class sums to the statistics only when the loss is being
differentiated (the backend's trace-time gate): once per training step,
never in `evaluate()` or `predict()`. The sums mean what the TensorFlow
path's mean (`EqualizationLoss`): sample weights and the reduction's
mask-aware normaliser in (SoftmaxEQL, EFL, EQFL) or out (Sigmoid-EQL and
FL+EQL, per-sample sums), loss scale and compile `loss_weights` out (they
never reach the forward pass); a step with a non-finite logit, a bad label
or non-finite sums is dropped whole.
"""

from typing import NamedTuple

from keras import ops
from keras.src.backend.common.masking import get_keras_mask
from keras.src.backend.common.symbolic_scope import in_symbolic_scope
from keras.src.losses.loss import (apply_mask, squeeze_or_expand_to_same_rank,
                                   reduce_weighted_values, standardize_reduction)

from keras_eql import _backend, _checks
from keras_eql._rows import column_sums


def _is_sparse(y_true, y_pred):
    true_rank, pred_rank = len(y_true.shape), len(y_pred.shape)
    if true_rank == pred_rank - 1:
        return True
    return true_rank == pred_rank and y_true.shape[-1] == 1 and y_pred.shape[-1] != 1


def _compatible(shape, expected):
    return len(shape) == len(expected) and all(
        a is None or b is None or a == b for a, b in zip(shape, expected))


def _first_failure(values, good):
    """The first of `values` where `good` is False, as float32 (NaN if none).

    Branch-free (a compiled step cannot branch on values cheaply under
    PyTorch): one argmin over the flattened verdicts, with a NaN sentinel
    appended so that an all-good or empty input picks it.
    """
    values = ops.concatenate([ops.reshape(ops.cast(values, "float32"), (-1,)),
                              ops.full((1,), float("nan"))])
    good = ops.concatenate([ops.reshape(ops.cast(good, "int32"), (-1,)),
                            ops.zeros((1,), "int32")])
    return ops.take(values, ops.argmin(good))


def prepare(loss_name, y_true, y_pred, *, num_classes, ignore_class, allow_background, binary):
    """Dense float32 targets, the rows' validity and the step's label verdict.

    The checks of `keras_eql._targets.prepare`: shapes raise at once; label
    and target values cannot raise inside a compiled step, so, as under
    TensorFlow's XLA, a bad value makes `ok` False (the caller returns a NaN
    loss with a zero gradient, leaves the statistics alone and records the
    value for `EqualizationLoss.bad_label`).

    Returns:
        `(targets, valid, ok, first_bad)`: float32 targets `(..., K)`
        (ignored rows as background, or as class 0 without a background
        label), the boolean mask of the counted rows (None when no row can
        be ignored), a scalar boolean and the first bad label or target
        value (float32 scalar, NaN when `ok`).
    """
    width = y_pred.shape[-1]
    if not _is_sparse(y_true, y_pred):
        if not _compatible(tuple(y_true.shape), tuple(y_pred.shape)):
            raise ValueError(
                f"{loss_name}: labels of shape {tuple(y_true.shape)} do not match logits of "
                f"shape {tuple(y_pred.shape)}; expected class ids of shape "
                f"{tuple(y_pred.shape[:-1])} or dense targets of shape {tuple(y_pred.shape)}.")
        targets = ops.cast(y_true, "float32")
        if binary:
            good = (targets == 0.0) | (targets == 1.0)
        else:
            good = (targets >= 0.0) & (targets <= 1.0)
        return targets, None, ops.all(good), _first_failure(targets, good)
    if len(y_true.shape) == len(y_pred.shape):
        y_true = ops.squeeze(y_true, -1)
    if not _compatible(tuple(y_true.shape), tuple(y_pred.shape[:-1])):
        raise ValueError(
            f"{loss_name}: labels of shape {tuple(y_true.shape)} do not match logits of "
            f"shape {tuple(y_pred.shape)}; expected class ids of shape "
            f"{tuple(y_pred.shape[:-1])} or dense targets of shape {tuple(y_pred.shape)}.")
    raw = ops.cast(y_true, "float32")
    labels = ops.cast(ops.round(raw), "int32")
    top = num_classes if allow_background else num_classes - 1
    in_range = (labels >= 0) & (labels <= top)
    valid = None
    if ignore_class is not None:
        valid = labels != int(ignore_class)
        in_range = in_range | ~valid
    good = in_range & (raw == ops.cast(labels, "float32"))
    ok, first_bad = ops.all(good), _first_failure(raw, good)
    if valid is not None:
        labels = ops.where(valid, labels, num_classes if allow_background else 0)
    # A bad label has made `ok` False; clipped, it cannot reach one_hot out of
    # range (PyTorch's raises, where the step must only turn NaN).
    labels = ops.clip(labels, 0, num_classes)
    # Label C is an all-negative row (the objectness column's positive).
    targets = ops.one_hot(labels, num_classes + 1, dtype="float32")[..., :width]
    return targets, valid, ok, first_bad


def _own_copy(sample_weight):
    """A copy of the sample weights for Keras's `apply_mask`, or None.

    `apply_mask` multiplies the weights by the mask in place (`*=`): under
    PyTorch that writes into the caller's tensor, which the loss reads again
    (the statistics' coefficients) and autograd saved for the backward pass.
    """
    return None if sample_weight is None else ops.copy(ops.convert_to_tensor(sample_weight))


def _row_weights(rows, sample_weight, input_mask, valid):
    """`s_i` of each row: sample weight x input mask x not ignored (as the TF path's)."""
    weights = ops.ones_like(rows)
    if sample_weight is not None:
        sample_weight = ops.cast(sample_weight, "float32")
        weights, sample_weight = squeeze_or_expand_to_same_rank(weights, sample_weight)
        weights = ops.reshape(ops.broadcast_to(weights * sample_weight, ops.shape(rows)),
                              ops.shape(rows))
    if input_mask is not None:
        weights = weights * ops.cast(input_mask, "float32")
    if valid is not None:
        weights = ops.where(valid, weights, 0.0)
    return ops.stop_gradient(weights)


def _reduction_coefficients(loss_name, rows, sample_weight, mask, reduction):
    """`d loss / d rows_i` of Keras's `reduce_weighted_values` (it is linear in the rows)."""
    reduction = standardize_reduction(reduction)
    if sample_weight is not None:
        sample_weight = ops.cast(sample_weight, "float32")
    weights = apply_mask(_own_copy(sample_weight), mask, dtype="float32", reduction=reduction)
    values = rows
    per_value = ops.ones_like(values)
    if weights is not None:
        values, weights = squeeze_or_expand_to_same_rank(values, ops.cast(weights, "float32"))
        per_value = ops.ones_like(values) * weights
    if tuple(per_value.shape) != tuple(values.shape):
        raise ValueError(
            f"{loss_name}: sample_weight of shape {tuple(sample_weight.shape)} does not weigh "
            f"the row losses of shape {tuple(rows.shape)} one to one.")
    if reduction in ("sum_over_batch_size", "mean", "mean_with_sample_weight"):
        if reduction == "mean_with_sample_weight" and weights is not None:
            divisor = ops.sum(weights)
        else:
            divisor = ops.cast(ops.size(values), "float32")
        per_value = ops.divide_no_nan(per_value, divisor)
    return ops.stop_gradient(ops.reshape(per_value, ops.shape(rows)))


def _inputs_finite(logits, valid):
    """Scalar bool: every logit of a counted row is finite."""
    row_sums = ops.sum(ops.cast(logits, "float32"), axis=-1)
    if valid is not None:
        row_sums = ops.where(valid, row_sums, 0.0)
    return ops.isfinite(ops.sum(row_sums))


class _Rows(NamedTuple):
    """What one call of a loss computes before its reduction (`_row_values`)."""

    y_pred: object  # the logits in the loss's dtype
    rows: object  # row losses in the loss's dtype: 0 on ignored rows, NaN on a bad step
    local: object  # float32 analytic derivative of the rows w.r.t. the logits
    positive: object  # boolean positives mask
    valid: object  # boolean mask of the counted rows, or None
    ok: object  # scalar bool: every label or target value is valid
    first_bad: object  # the first bad label or target value (NaN when `ok`)


def _row_values(loss, y_true, y_pred):
    """The `_Rows` of one call."""
    label = type(loss).__name__
    y_pred = ops.convert_to_tensor(y_pred, dtype=loss.dtype)
    y_true = ops.convert_to_tensor(y_true, dtype=loss.dtype)
    if len(y_pred.shape) == 0 or y_pred.shape[-1] is None:
        raise ValueError(f"{label}: the class axis of the logits must be static, got shape "
                         f"{tuple(y_pred.shape)}.")
    loss._check_width(y_pred.shape[-1])
    targets, valid, ok, first_bad = prepare(
        label, y_true, y_pred, num_classes=loss.num_classes, ignore_class=loss.ignore_class,
        allow_background=loss._allow_background, binary=loss._binary_targets)
    logits = y_pred if valid is None else ops.where(valid[..., None], y_pred, 0.0)
    rows, local, positive = loss._forward_rows(targets, ops.cast(logits, "float32"),
                                               loss._statistics)
    normalizer = loss._forward_normalizer(targets, valid)
    if normalizer is not None:
        rows = rows / normalizer
        if not loss._per_sample_statistics:  # per-sample sums never see the normaliser
            local = local / normalizer
    rows = ops.cast(ops.where(ok, rows, float("nan")), loss.dtype)
    if valid is not None:
        rows = ops.where(valid, rows, 0.0)
    return _Rows(y_pred, rows, local, positive, valid, ok, first_bad)


def row_losses(loss, y_true, y_pred):
    """`EqualizationLoss.call` on a forward-statistics backend: the rows, no statistics."""
    _checks.check_logits_dtype(type(loss).__name__, y_pred)
    return _row_values(loss, y_true, y_pred).rows


def call(loss, y_true, y_pred, sample_weight=None):
    """`EqualizationLoss.__call__` on a forward-statistics backend."""
    label = type(loss).__name__
    _checks.check_logits_dtype(label, y_pred)
    input_mask = get_keras_mask(y_pred)
    differentiated = loss.update_statistics and _backend.being_differentiated(y_pred)
    y_pred, rows, local, positive, valid, ok, first_bad = _row_values(loss, y_true, y_pred)
    if in_symbolic_scope():
        if loss.update_statistics:
            # Keras's symbolic build: the last moment to say that `attach` is
            # missing while the model still holds its variables.
            loss._statistics.check_attached()
    else:
        # In training and evaluation alike, as TensorFlow's `BadLabelMonitor`.
        loss._statistics.record_bad_label(ok, first_bad)
    mask = valid
    if input_mask is not None:
        mask = input_mask if mask is None else (ops.cast(input_mask, "bool") & mask)
    value = reduce_weighted_values(rows, sample_weight=_own_copy(sample_weight), mask=mask,
                                   reduction=loss.reduction, dtype=loss.dtype)
    if loss.reduction not in (None, "none") and len(value.shape):
        value = ops.sum(value)  # Keras returns an empty batch unreduced; its loss is 0.
    if differentiated:
        if loss._per_sample_statistics:
            coefficients = _row_weights(rows, sample_weight, input_mask, valid)
        elif loss.reduction in (None, "none"):
            raise ValueError(
                f"{label}: with reduction={loss.reduction!r} the loss cannot know how its rows "
                "are reduced, so under this backend it cannot compute its statistics. Use a "
                "Keras reduction, or update_statistics=False.")
        else:
            coefficients = _reduction_coefficients(label, rows, sample_weight, mask,
                                                   loss.reduction)
        positive_sum, negative_sum = column_sums(
            ops.stop_gradient(local), positive, coefficients, loss.num_classes)
        if loss._rows_nan_on_non_finite_logits:
            # NaN rows: a bad label, or a non-finite logit of a counted row
            # (the sigmoid rows carry it, `_rows._sigmoid_rows`); a row that
            # overflows drops the step too, the safe side.
            finite = ops.all(ops.isfinite(rows))
        else:
            finite = ok & _inputs_finite(y_pred, valid)
        loss._statistics.accumulate_sums(positive_sum, negative_sum, inputs_finite=finite)
    return value
