"""Label layouts and input validation shared by every keras_eql loss.

Sparse labels have the logits' shape without the class axis (a trailing axis
of size 1 is accepted too): `0..C-1` are classes, `C` is background (an
all-negative row, the objectness column's positive), `ignore_class` drops a
row. Dense targets have the logits' shape.

Checks raise `ValueError` naming the loss and the offending value: at once in
eager mode, when the graph runs under `tf.function`. XLA compiles assertions
away (`jit_compile=True`), so every check also yields a `LabelVerdict`: the
losses turn a step with a bad label or target into a NaN loss with a zero
gradient (`nan_unless`), leave their state alone, and record the value in a
`BadLabelMonitor` that `GradientStatisticsLogger` reads, with no host
callback in the compiled step. `validate_labels` checks arrays and datasets
before training.
"""

import warnings
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from keras.src.backend.common.masking import set_keras_mask

from keras_eql._checks import expected_labels
from keras_eql._statistics import _variable, all_reduce_sum


class LabelVerdict(NamedTuple):
    """Whether every label (or dense target) of a step is valid, and the first bad one."""

    ok: tf.Tensor  # scalar bool
    first_bad: tf.Tensor  # float32 scalar, NaN when `ok`


def _probability_activation(y_pred):
    """The activation that produced `y_pred` when it holds probabilities, else None.

    Keras tags the outputs of its softmax and sigmoid activations with
    `_keras_logits`, and its own losses warn on them; a graph tensor also
    shows the op that made it.
    """
    if hasattr(y_pred, "_keras_logits"):
        return "softmax or sigmoid"
    if isinstance(y_pred, tf.Tensor) and not tf.executing_eagerly():
        op_type = getattr(getattr(y_pred, "op", None), "type", None)
        if op_type in ("Softmax", "Sigmoid"):
            return op_type.lower()
    return None


def check_logits_dtype(loss_name, y_pred):
    """Reject integer, boolean and string logits before Keras casts them.

    Also warns when `y_pred` holds probabilities (the output of a softmax or
    sigmoid activation) instead of logits.
    """
    activation = _probability_activation(y_pred)
    if activation is not None:
        warnings.warn(
            f"{loss_name}: y_pred is the output of a {activation} activation, i.e. probabilities, "
            "but keras_eql losses take raw logits. Remove the activation from the model's last "
            "layer (apply it to the predictions at inference time instead).", stacklevel=3)
    dtype = getattr(y_pred, "dtype", None)
    if dtype is None:
        dtype = np.asarray(y_pred).dtype
    try:
        dtype = tf.as_dtype(dtype)
    except TypeError:
        dtype = None
    if dtype is None or not dtype.is_floating:
        raise ValueError(
            f"{loss_name}: logits (y_pred) must be a floating-point tensor, got "
            f"dtype {getattr(dtype, 'name', dtype)}. Pass raw float logits."
        )


def raise_if(loss_name, condition, message, value):
    """Raise `message.format(value)` where `condition` holds.

    Eager: a Python `ValueError`. Graph: an assertion op the caller must
    depend on. XLA: nothing (the assertion compiles to a no-op).
    """
    if tf.executing_eagerly():
        if bool(condition):
            raise ValueError(f"{loss_name}: " + message.format(value.numpy()))
        return []
    return [
        tf.debugging.Assert(
            tf.logical_not(condition), [f"{loss_name}: " + message.format("<value>"), value]
        )
    ]


def first_failure(values, ok):
    """The first value where `ok` is False (NaN if none; safe on empty input)."""
    values = tf.concat([tf.reshape(values, [-1]), [np.nan]], 0)
    ok = tf.concat([tf.reshape(ok, [-1]), [False]], 0)
    # `gather`, not indexing: XLA needs a strided slice's start at compile
    # time, which made every batch of labels a new compilation.
    return tf.gather(values, tf.argmin(tf.cast(ok, tf.int32)))


def nan_unless(ok, losses):
    """`losses` where `ok` holds, else NaN everywhere, with a zero gradient.

    Under XLA the assertions are gone: a bad label must still show (a NaN
    loss in the progress bar, which `TerminateOnNaN` stops on) and do no harm
    (`tf.where` passes no gradient to the unselected branch, so the step
    contributes none; the caller keeps the state unchanged).
    """
    return tf.where(ok, losses, tf.constant(np.nan, losses.dtype))


def first_bad_over_replicas(bad, value):
    """`(any_bad, value)`: whether any replica is bad, and the first bad replica's value.

    `tf.distribute` reduces only by SUM or MEAN: each replica writes its flag
    and value at its own index of a zero vector, and one SUM gathers them.
    """
    context = tf.distribute.get_replica_context()
    bad = tf.cast(bad, tf.float32)
    if context is None or context.num_replicas_in_sync <= 1:
        return bad > 0.0, value
    own = tf.one_hot(context.replica_id_in_sync_group, context.num_replicas_in_sync)
    flags, values = all_reduce_sum(own * bad, own * tf.where(bad > 0.0, value, 0.0))
    return tf.reduce_any(flags > 0.0), tf.gather(values, tf.argmax(flags))


class BadLabelMonitor:
    """The first bad label (or dense target) a step met, NaN while there was none.

    A diagnostic, not model state: not saved, not tracked. Written in the
    forward pass (training and evaluation), read by
    `GradientStatisticsLogger` between steps.

    Args:
        name: prefix of the variable name.
    """

    def __init__(self, name):
        self.value = _variable(np.float32(np.nan), f"{name}/first_bad_label",
                               tf.VariableSynchronization.ON_WRITE)

    def record(self, verdict):
        """Assign op keeping the first bad value met by any replica."""
        any_bad, value = first_bad_over_replicas(
            tf.logical_not(verdict.ok), tf.cast(verdict.first_bad, tf.float32))
        current = tf.convert_to_tensor(self.value)
        return self.value.assign(tf.where(tf.math.is_nan(current) & any_bad, value, current))

    def pop(self):
        """The recorded value (None if none), cleared."""
        value = float(self.value.numpy())
        self.value.assign(np.float32(np.nan))
        return None if np.isnan(value) else value


def is_sparse(y_true, y_pred):
    """Whether `y_true` holds class ids rather than per-class targets."""
    true_rank, pred_rank = y_true.shape.rank, y_pred.shape.rank
    if true_rank == pred_rank - 1:
        return True
    return true_rank == pred_rank and y_true.shape[-1] == 1 and y_pred.shape[-1] != 1


def sparse_targets(loss_name, labels, depth, *, num_classes, ignore_class,
                   allow_background, one_hot=True):
    """Targets, validity mask and checks for sparse labels.

    Args:
        loss_name: used in error messages.
        labels: float or integer tensor of class ids.
        depth: width of the returned targets (C, or C + 1 with objectness).
        num_classes: C; label C is background when `allow_background`.
        ignore_class: label that drops a row, or None.
        allow_background: whether label C is accepted.
        one_hot: return float32 one-hot targets; else int32 ids.

    Returns:
        `(targets, labels, valid, checks, verdict)`: the targets (float32
        one-hot `(..., depth)`, or int32 ids with ignored rows as background,
        or as 0 without a background label), int32 labels with ignored rows
        set to 0, a bool validity mask (None when nothing can be ignored),
        assertion ops for graph mode and the `LabelVerdict`.
    """
    raw = tf.cast(labels, tf.float32)
    labels = tf.cast(tf.round(raw), tf.int32)
    top = num_classes if allow_background else num_classes - 1
    valid = None
    in_range = (labels >= 0) & (labels <= top)
    if ignore_class is not None:
        valid = tf.not_equal(labels, int(ignore_class))
        in_range = in_range | tf.logical_not(valid)
    integral = tf.equal(raw, tf.cast(labels, tf.float32))
    ok = in_range & integral
    bad = first_failure(raw, ok)
    expected = expected_labels(num_classes, ignore_class=ignore_class,
                               allow_background=allow_background)
    all_ok = tf.reduce_all(ok)
    checks = raise_if(
        loss_name,
        tf.logical_not(all_ok),
        "label {} is out of range; expected " + expected + ".",
        bad,
    )
    verdict = LabelVerdict(all_ok, bad)
    safe = labels if valid is None else tf.where(valid, labels, 0)
    # Ignored rows become background (all-negative) rows; their loss is
    # masked out anyway.
    hot = labels if valid is None else tf.where(valid, labels, num_classes)
    if not one_hot:
        # Ids for the fused losses, which never expand them; without a
        # background label an ignored row takes the safe id 0 instead.
        return (hot if allow_background else safe), safe, valid, checks, verdict
    targets = tf.one_hot(hot, num_classes + 1, dtype=tf.float32)[..., :depth]
    return targets, safe, valid, checks, verdict


def _check_dense_shape(loss_name, targets, logits):
    if targets.shape.rank != logits.shape.rank or not targets.shape.is_compatible_with(
        logits.shape
    ):
        raise ValueError(
            f"{loss_name}: labels of shape {targets.shape} do not match logits of "
            f"shape {logits.shape}; expected class ids of shape {logits.shape[:-1]} "
            f"or dense targets of shape {logits.shape}."
        )


def _dense_rule(binary):
    """`(distance, message)`: each target's distance to the accepted values, and the error.

    The distance is >= 0, 0 exactly on an accepted value and NaN for NaN.
    """
    if binary:
        return (lambda t: tf.minimum(tf.abs(t), tf.abs(t - 1.0)),
                "dense target {} is not 0 or 1 (soft targets are for EqualizedQualityFocalLoss).")
    return (lambda t: tf.nn.relu(-t) + tf.nn.relu(t - 1.0),
            "dense target {} is outside [0, 1].")


def dense_targets(loss_name, targets, logits, *, binary):
    """Validate dense targets: same shape as the logits, in [0, 1], 0/1 if `binary`.

    Returns:
        `(targets, checks, verdict)`: float32 targets, graph-mode assertion
        ops and the `LabelVerdict`.
    """
    _check_dense_shape(loss_name, targets, logits)
    targets = tf.cast(targets, tf.float32)
    flat = tf.reshape(targets, [-1])
    distance, message = _dense_rule(binary)
    # The distances' plain sum is 0 exactly when every target is valid (a
    # sum of non-negative floats has no cancellation); XLA's CPU backend
    # runs it as one vectorised pass, about a third of a boolean `reduce_all`.
    all_ok = tf.equal(tf.reduce_sum(distance(flat)), 0.0)
    # The first bad value only when there is one: finding it is an argmin
    # over every target, which XLA's CPU backend runs element by element.
    # The branch recomputes the distances, so that the sum above does not
    # write them out for the branch.
    bad = tf.cond(all_ok, lambda: tf.constant(np.nan, tf.float32),
                  lambda: first_failure(flat, tf.equal(distance(flat), 0.0)))
    checks = raise_if(loss_name, tf.logical_not(all_ok), message, bad)
    return targets, checks, LabelVerdict(all_ok, bad)


def single_positive_ids(rows):
    """Ids and values of dense `(R, K)` targets, and which rows have at most one positive.

    One matrix product gives each row's sum and its column-weighted sum; the
    column of a single positive is their ratio, confirmed by gathering it
    (targets are non-negative, so the gathered value equals the row's sum
    exactly when it is the row's only non-zero).

    Returns:
        `(ids, values, single)`: int32 `(R,)` ids (`K` for an all-zero row),
        the target at that id and a bool `(R,)`: the row has at most one
        positive.
    """
    width = rows.shape[-1]
    columns = tf.stack([tf.ones([width]), tf.range(width, dtype=tf.float32)], 1)
    total, weighted = tf.unstack(tf.matmul(rows, columns), axis=1)
    nonzero = total > 0.0
    column = tf.cast(tf.round(weighted / tf.where(nonzero, total, 1.0)), tf.int32)
    column = tf.clip_by_value(column, 0, width - 1)
    values = tf.gather(rows, column[:, None], batch_dims=1)[:, 0]
    single = tf.logical_not(nonzero) | tf.equal(values, total)
    return tf.where(nonzero, column, width), values, single


_SEVERAL_POSITIVES = ("targets='one_hot' takes at most one positive per row, but a row of the "
                      "dense targets has several (they sum to {}); pass targets='any' for "
                      "multi-label rows.")


def one_hot_targets(loss_name, targets, logits, *, binary):
    """Validate dense targets with at most one positive per row and return one id per row.

    The `targets="one_hot"` route: the same checks as `dense_targets`, plus
    at most one positive (non-zero target) per row, in one pass that also
    finds the ids. Each target is coded as 0 (zero), 1 (an accepted
    positive) or 2 (not accepted); one matrix product with `[1, j]` gives
    each row's code sum and column-weighted sum, both exact integers. A row
    is valid with at most one positive exactly when its code sum is 0 or 1,
    and then its weighted sum is the positive's column.

    Returns:
        `(ids, values, checks, verdict)`: int32 ids `(...)` (`K`, an
        all-negative row, where a row has no positive), the float32 target at
        each id `(...)`, graph-mode assertion ops and the `LabelVerdict`: its
        value is the first bad target or, if every target is accepted, the
        sum of the first row with several positives.
    """
    _check_dense_shape(loss_name, targets, logits)
    width = targets.shape[-1]
    leading = tf.shape(targets)[:-1]
    rows = tf.reshape(tf.cast(targets, tf.float32), [-1, width])
    distance, message = _dense_rule(binary)
    code = tf.where(tf.equal(distance(rows), 0.0), tf.cast(rows > 0.0, tf.float32), 2.0)
    # The column as `1024 high + low`: every factor stays exact where a GPU
    # multiplies in TensorFloat-32 (11 significant bits).
    index = tf.range(width)
    columns = tf.cast(tf.stack([tf.ones_like(index), index % 1024, index // 1024], 1), tf.float32)
    count, low, high = tf.unstack(tf.matmul(code, columns), axis=1)
    all_ok = tf.reduce_all(count <= 1.0)
    single = tf.equal(count, 1.0)
    column = tf.clip_by_value(tf.cast(high, tf.int32) * 1024 + tf.cast(low, tf.int32), 0, width - 1)
    values = tf.gather(rows, column[:, None], batch_dims=1)[:, 0]
    ids = tf.where(single, column, width)

    def diagnose():
        """`(value, accepted)`: the first bad target, or the first multi-positive row's sum."""
        flat = tf.reshape(rows, [-1])
        element_ok = tf.equal(distance(flat), 0.0)
        accepted = tf.reduce_all(element_ok)
        row_sum = first_failure(tf.reduce_sum(rows, -1), count <= 1.0)
        return tf.where(accepted, row_sum, first_failure(flat, element_ok)), accepted

    bad, accepted = tf.cond(all_ok, lambda: (tf.constant(np.nan, tf.float32), tf.constant(True)),
                            diagnose)
    checks = (raise_if(loss_name, tf.logical_not(accepted), message, bad)
              + raise_if(loss_name, tf.logical_not(all_ok) & accepted, _SEVERAL_POSITIVES, bad))
    return (tf.reshape(ids, leading), tf.reshape(values, leading), checks,
            LabelVerdict(all_ok, bad))


def prepare(loss_name, y_true, y_pred, *, num_classes, ignore_class,
            allow_background, binary, one_hot=True):
    """Targets for `y_pred` from sparse labels or dense targets, validated.

    Args:
        loss_name: used in error messages.
        y_true: class ids (the logits' shape without the class axis, or with
            a trailing 1) or dense targets of the logits' shape.
        y_pred: logits `(..., K)`; K may include an objectness column.
        num_classes: C, the classes that labels may name.
        ignore_class: label that drops a row, or None.
        allow_background: whether label C (background) is accepted.
        binary: dense targets must be 0/1 (else anywhere in [0, 1]).
        one_hot: expand sparse labels into float32 targets; else the targets
            of sparse labels are int32 ids (see `sparse_targets`).

    Returns:
        `(targets, labels, valid, logits, verdict)`: float32 targets
        `(..., K)` (ids if `one_hot=False` and the labels are sparse), int32
        labels (None for dense targets), the bool validity mask (None when no
        row can be ignored), `y_pred` behind the graph-mode checks and the
        `LabelVerdict` (for XLA, where the checks are compiled away).
    """
    labels = valid = None
    if is_sparse(y_true, y_pred):
        if y_true.shape.rank == y_pred.shape.rank:
            y_true = tf.squeeze(y_true, -1)
        expected = y_pred.shape[:-1]
        message = (f"{loss_name}: labels of shape {y_true.shape} do not match logits of "
                   f"shape {y_pred.shape}; expected class ids of shape {expected} or "
                   f"dense targets of shape {y_pred.shape}.")
        if not y_true.shape.is_compatible_with(expected):
            raise ValueError(message)
        checks = [] if tf.executing_eagerly() else [
            tf.debugging.assert_equal(tf.shape(y_true), tf.shape(y_pred)[:-1], message=message)]
        with tf.control_dependencies(checks):
            y_true = tf.identity(y_true)
        targets, labels, valid, value_checks, verdict = sparse_targets(
            loss_name, y_true, y_pred.shape[-1], num_classes=num_classes,
            ignore_class=ignore_class, allow_background=allow_background,
            one_hot=one_hot)
        checks = checks + value_checks
    else:
        targets, checks, verdict = dense_targets(loss_name, y_true, y_pred, binary=binary)
    with tf.control_dependencies(checks):
        logits = tf.identity(y_pred)
    return targets, labels, valid, logits, verdict


def mask_rows(losses, valid, dtype):
    """Row losses in `dtype`, zero on ignored rows, carrying the Keras mask.

    The mask makes Keras drop ignored rows from the `sum_over_batch_size`
    denominator, as its own `SparseCategoricalCrossentropy` does.
    """
    losses = tf.cast(losses, dtype)
    if valid is not None:
        losses = tf.where(valid, losses, tf.zeros_like(losses))
        set_keras_mask(losses, valid)
    return losses
