"""Constructor and input checks that need no backend: every bad value gets an error naming the loss.

The loss classes and `_targets` (TensorFlow) use these, so that
constructing a loss never imports TensorFlow.
"""

import warnings

import keras
import numpy as np


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


def check_logits_dtype(loss_name, y_pred):
    """Reject integer, boolean and string logits before they are cast; warn on probabilities.

    The backend-neutral twin of `_targets.check_logits_dtype`: Keras tags
    the outputs of its softmax and sigmoid activations with `_keras_logits`
    on every backend that lets a tensor carry an attribute.
    """
    if hasattr(y_pred, "_keras_logits"):
        warnings.warn(
            f"{loss_name}: y_pred is the output of a softmax or sigmoid activation, i.e. "
            "probabilities, but keras_eql losses take raw logits. Remove the activation from the "
            "model's last layer (apply it to the predictions at inference time instead).",
            stacklevel=3)
    dtype = getattr(y_pred, "dtype", None)
    if dtype is None:
        dtype = np.asarray(y_pred).dtype
    try:
        name = keras.backend.standardize_dtype(dtype)
    except (TypeError, ValueError):
        name = str(dtype)
    if not (name.startswith("float") or name == "bfloat16"):
        raise ValueError(
            f"{loss_name}: logits (y_pred) must be a floating-point tensor, got "
            f"dtype {name}. Pass raw float logits.")


def expected_labels(num_classes, *, ignore_class, allow_background):
    """The text of the valid sparse labels, as the errors print it."""
    top = num_classes if allow_background else num_classes - 1
    expected = f"an integer in 0..{top}"
    if allow_background:
        expected += f" ({num_classes} = background)"
    if ignore_class is not None:
        expected += f" or ignore_class={ignore_class}"
    return expected


TARGET_ROUTES = ("any", "one_hot")


def check_target_route(loss_name, route):
    """Validate the `targets` constructor argument; returns it."""
    if not isinstance(route, str) or route not in TARGET_ROUTES:
        raise ValueError(
            f"{loss_name}: `targets` must be one of {TARGET_ROUTES}, got {route!r}: "
            "'one_hot' for dense targets with at most one positive per row (one-hot, or one-hot "
            "times a quality score), 'any' for every dense target.")
    return route


def _targets_of(element):
    """The targets of a dataset element `(x, y)`, `(x, y, sample_weight)` or `y`."""
    return element[1] if isinstance(element, tuple) and len(element) > 1 else element


def _first_bad_label(values, *, num_classes, width, ignore_class, allow_background, binary):
    """`(index, value, expected)` of the first bad label or target in `values`, or None."""
    values = np.asarray(values)
    if values.ndim >= 2 and values.shape[-1] == width and width > 1:  # dense targets
        flat = values.reshape(-1).astype(np.float64)
        ok = ((flat == 0.0) | (flat == 1.0)) if binary else ((flat >= 0.0) & (flat <= 1.0))
        expected = "0 or 1 (soft targets are for EqualizedQualityFocalLoss)" if binary else "a target in [0, 1]"
    else:
        if values.ndim >= 1 and values.shape[-1:] == (1,):
            values = values[..., 0]
        flat = values.reshape(-1).astype(np.float64)
        rounded = np.round(flat)
        top = num_classes if allow_background else num_classes - 1
        ok = (rounded >= 0) & (rounded <= top) & (rounded == flat)
        if ignore_class is not None:
            ok |= flat == ignore_class
        expected = expected_labels(num_classes, ignore_class=ignore_class,
                                   allow_background=allow_background)
    bad = np.flatnonzero(~ok)
    if bad.size == 0:
        return None
    return int(bad[0]), flat[bad[0]], expected


def validate_labels(loss, labels, *, num_classes=None):
    """Check labels or dense targets against a loss's conventions before training.

    Under `jit_compile=True` a bad label cannot raise inside the step (XLA
    drops assertions): the step's loss is NaN and it changes nothing. This
    opt-in check finds the value first, in NumPy, without compiling anything.

    Args:
        loss: a keras_eql loss (its `num_classes`, `ignore_class` and label
            layout are used).
        labels: class ids or dense targets: an array or tensor (any
            backend's), or a `tf.data.Dataset` or `keras.utils.PyDataset`
            whose elements are `(x, y)`, `(x, y, sample_weight)` or `y`
            alone (single-output models).
        num_classes: C, when the loss was built with `num_classes=None` and
            has not been called yet.

    Returns:
        The number of label values checked.

    Raises:
        ValueError: naming the loss, the first bad value and where it is.

    Example:
        >>> import numpy as np, keras_eql
        >>> keras_eql.validate_labels(keras_eql.SigmoidEQL(num_classes=3), np.array([0, 3, -1]))
        3
        >>> keras_eql.validate_labels(keras_eql.SigmoidEQL(num_classes=3), np.array([0, 4]))
        Traceback (most recent call last):
        ...
        ValueError: SigmoidEQL: label 4 at index 1 is out of range; expected an integer in 0..3 (3 = background) or ignore_class=-1.
    """
    label = type(loss).__name__
    num_classes = num_classes if num_classes is not None else getattr(loss, "num_classes", None)
    if num_classes is None:
        raise ValueError(f"{label}: validate_labels needs `num_classes` (the loss has not been built).")
    extra = loss._extra_columns() if hasattr(loss, "_extra_columns") else 0
    conventions = dict(num_classes=int(num_classes), width=int(num_classes) + extra,
                       ignore_class=getattr(loss, "ignore_class", None),
                       allow_background=bool(getattr(loss, "_allow_background", False)),
                       binary=bool(getattr(loss, "_binary_targets", True)))
    if hasattr(labels, "as_numpy_iterator"):  # tf.data, without importing TensorFlow
        batches = (_targets_of(element) for element in labels.as_numpy_iterator())
        where = "batch {batch}, index {index}"
    elif isinstance(labels, keras.utils.PyDataset):
        batches = (_targets_of(labels[index]) for index in range(len(labels)))
        where = "batch {batch}, index {index}"
    else:
        batches = [keras.ops.convert_to_numpy(labels)]
        where = "index {index}"
    checked = 0
    for batch, values in enumerate(batches):
        found = _first_bad_label(keras.ops.convert_to_numpy(values), **conventions)
        if found is not None:
            index, value, expected = found
            kind = "dense target" if expected.startswith(("0 or 1", "a target")) else "label"
            raise ValueError(f"{label}: {kind} {value:g} at {where.format(batch=batch, index=index)} "
                             f"is out of range; expected {expected}.")
        checked += int(np.size(values))
    return checked
