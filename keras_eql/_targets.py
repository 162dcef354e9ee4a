"""Label layouts and input validation shared by every keras_eql loss.

Sparse labels have the logits' shape without the class axis (a trailing axis
of size 1 is accepted too): `0..C-1` are classes, `C` is background (an
all-negative row, the objectness column's positive), `ignore_class` drops a
row. Dense targets have the logits' shape.

Checks raise `ValueError` naming the loss and the offending value: at once in
eager mode, when the graph runs under `tf.function`. XLA compiles assertions
away (`jit_compile=True`); there out-of-range labels count as background.
"""

import warnings

import numpy as np
import tensorflow as tf
from keras.src.backend.common.masking import set_keras_mask


def check_hyperparameter(loss_name, name, value, *, minimum=None, maximum=None,
                         exclusive_minimum=False, allow_none=False):
    """Validate a numeric constructor argument; returns it as a float."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{loss_name}: `{name}` must be a number, got {value!r}.")
    value = float(value)
    too_small = minimum is not None and (
        value <= minimum if exclusive_minimum else value < minimum
    )
    too_large = maximum is not None and value > maximum
    if too_small or too_large or not np.isfinite(value):
        low = "(" if exclusive_minimum else "["
        bounds = f"{low}{minimum if minimum is not None else '-inf'}, "
        bounds += f"{maximum if maximum is not None else 'inf'}]"
        raise ValueError(f"{loss_name}: `{name}` must be in {bounds}, got {value!r}.")
    return value


def check_from_logits(loss_name, from_logits):
    """`from_logits`, accepted for the Keras habit: only True (raw logits) is meaningful.

    Returns:
        True.

    Raises:
        ValueError: any other value, naming the loss and pointing to raw logits.
    """
    if isinstance(from_logits, (bool, np.bool_)) and from_logits:
        return True
    raise ValueError(
        f"{loss_name}: from_logits={from_logits!r} is not supported; keras_eql losses take raw "
        "logits (the model's outputs before any softmax or sigmoid), which from_logits=True, the "
        "default, states. Remove the final activation from the model and pass its raw outputs.")


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
        `(targets, labels, valid, checks)`: the targets (float32 one-hot
        `(..., depth)`, or int32 ids with ignored rows as background, or as 0
        without a background label), int32 labels with ignored rows set to 0,
        a bool validity mask (None when nothing can be ignored) and assertion
        ops for graph mode.
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
    expected = f"0..{top}"
    if allow_background:
        expected += f" ({num_classes} = background)"
    if ignore_class is not None:
        expected += f" or ignore_class={ignore_class}"
    checks = raise_if(
        loss_name,
        tf.logical_not(tf.reduce_all(ok)),
        "label {} is out of range; expected an integer in " + expected + ".",
        bad,
    )
    safe = labels if valid is None else tf.where(valid, labels, 0)
    # Ignored rows become background (all-negative) rows; their loss is
    # masked out anyway.
    hot = labels if valid is None else tf.where(valid, labels, num_classes)
    if not one_hot:
        # Ids for the fused losses, which never expand them; without a
        # background label an ignored row takes the safe id 0 instead.
        return (hot if allow_background else safe), safe, valid, checks
    targets = tf.one_hot(hot, num_classes + 1, dtype=tf.float32)[..., :depth]
    return targets, safe, valid, checks


def dense_targets(loss_name, targets, logits, *, binary):
    """Validate dense targets: same shape as the logits, in [0, 1], 0/1 if `binary`."""
    if targets.shape.rank != logits.shape.rank or not targets.shape.is_compatible_with(
        logits.shape
    ):
        raise ValueError(
            f"{loss_name}: labels of shape {targets.shape} do not match logits of "
            f"shape {logits.shape}; expected class ids of shape {logits.shape[:-1]} "
            f"or dense targets of shape {logits.shape}."
        )
    targets = tf.cast(targets, tf.float32)
    flat = tf.reshape(targets, [-1])
    if binary:
        ok = tf.equal(flat, 0.0) | tf.equal(flat, 1.0)
        message = "dense target {} is not 0 or 1 (soft targets are for EqualizedQualityFocalLoss)."
    else:
        ok = (flat >= 0.0) & (flat <= 1.0)
        message = "dense target {} is outside [0, 1]."
    bad = first_failure(flat, ok)
    checks = raise_if(loss_name, tf.logical_not(tf.reduce_all(ok)), message, bad)
    return targets, checks


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
        `(targets, labels, valid, logits)`: float32 targets `(..., K)` (ids
        if `one_hot=False` and the labels are sparse), int32
        labels (None for dense targets), the bool validity mask (None when no
        row can be ignored) and `y_pred` behind the graph-mode checks.
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
        targets, labels, valid, value_checks = sparse_targets(
            loss_name, y_true, y_pred.shape[-1], num_classes=num_classes,
            ignore_class=ignore_class, allow_background=allow_background,
            one_hot=one_hot)
        checks = checks + value_checks
    else:
        targets, checks = dense_targets(loss_name, y_true, y_pred, binary=binary)
    with tf.control_dependencies(checks):
        logits = tf.identity(y_pred)
    return targets, labels, valid, logits


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
