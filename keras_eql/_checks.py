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
