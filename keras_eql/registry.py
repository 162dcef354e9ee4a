"""Pick any loss by name: `keras_eql.get` and `keras_eql.available_losses`.

Short names (see `available_losses()`) and class names resolve to the
keras_eql losses and to Keras' own plain baselines. The Keras ones are built
with `from_logits=True`, because every keras_eql loss takes raw logits and a
benchmark must feed the same model output to all of them; pass
`from_logits=False` to override.
"""

import keras

from keras_eql import baselines, losses

_KERAS_EQL_LOSSES = {
    "efl": losses.EqualizedFocalLoss,
    "eqfl": losses.EqualizedQualityFocalLoss,
    "fl_eql": losses.FocalSigmoidEQL,
    "sigmoid_eql": losses.SigmoidEQL,
    "softmax_eql": losses.SoftmaxEQL,
    "eql_v1": baselines.EQLv1,
    "seesaw": baselines.SeesawLoss,
    "logit_adjusted": baselines.LogitAdjustedLoss,
    "balanced_softmax": baselines.BalancedSoftmax,
    "class_balanced": baselines.ClassBalancedLoss,
}

# Keras identifier -> Keras class name; resolved through `keras.losses.get`.
_KERAS_LOSSES = {
    "binary_crossentropy": "BinaryCrossentropy",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "binary_focal_crossentropy": "BinaryFocalCrossentropy",
}

_PACKAGE_PREFIX = "keras_eql>"


def available_losses():
    """The short names `get` accepts, one per loss.

    Class names (`"SeesawLoss"`, `"BinaryCrossentropy"`, ...) and registered
    names (`"keras_eql>SeesawLoss"`) are accepted too.

    Returns:
        A list of strings: the keras_eql losses, then Keras' plain baselines.

    Example:
        >>> from keras_eql.registry import available_losses
        >>> "seesaw" in available_losses()
        True
    """
    return list(_KERAS_EQL_LOSSES) + list(_KERAS_LOSSES)


def _resolve_name(name):
    """(keras_eql class or None, Keras class name or None) for a string."""
    key = name[len(_PACKAGE_PREFIX):] if name.startswith(_PACKAGE_PREFIX) else name
    if key in _KERAS_EQL_LOSSES:
        return _KERAS_EQL_LOSSES[key], None
    if key in _KERAS_LOSSES:
        return None, _KERAS_LOSSES[key]
    for cls in _KERAS_EQL_LOSSES.values():
        if key == cls.__name__:
            return cls, None
    if key in _KERAS_LOSSES.values():
        return None, key
    raise ValueError(
        f"keras_eql.get: unknown loss {name!r}. Valid names: {', '.join(available_losses())} "
        f"(or a class name: {', '.join(c.__name__ for c in _KERAS_EQL_LOSSES.values())}, "
        f"{', '.join(_KERAS_LOSSES.values())}).")


def _build(name, config):
    cls, keras_name = _resolve_name(name)
    if cls is not None:
        return cls.from_config(config)
    config = {"from_logits": True, **config}
    return keras.losses.get({"class_name": keras_name, "config": config})


def get(identifier, **kwargs):
    """A loss instance from a name, a config dict or an instance.

    Args:
        identifier: a short name from `available_losses()` (`"efl"`,
            `"seesaw"`, `"binary_crossentropy"`, ...), a class name, a
            `keras.losses.Loss` instance (returned as is), or a config dict:
            `{"class_name": ..., "config": {...}}` as written by
            `keras.saving.serialize_keras_object`, where `class_name` may also
            be a short name.
        **kwargs: constructor arguments; with a dict they override its
            `config` entries. Keras' plain baselines default to
            `from_logits=True`.

    Returns:
        A `keras.losses.Loss`.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones),
            an identifier of another type, or kwargs given with an instance.

    Example:
        >>> from keras_eql.registry import get
        >>> get("seesaw", q=0.0).q
        0.0
        >>> get("binary_crossentropy").get_config()["from_logits"]
        True
    """
    if isinstance(identifier, keras.losses.Loss):
        if kwargs:
            raise ValueError(
                f"keras_eql.get: keyword arguments {sorted(kwargs)} cannot be applied to the "
                f"loss instance {identifier!r}; pass a name or a config dict instead.")
        return identifier
    if isinstance(identifier, str):
        return _build(identifier, kwargs)
    if isinstance(identifier, dict):
        if "class_name" not in identifier:
            raise ValueError(
                f"keras_eql.get: a config dict needs a 'class_name' key, got keys "
                f"{sorted(identifier)}.")
        name = identifier.get("registered_name") or identifier["class_name"]
        config = {**(identifier.get("config") or {}), **kwargs}
        try:
            cls, keras_name = _resolve_name(name)
        except ValueError as unknown:
            # Any other Keras-serialized loss: let Keras resolve it.
            try:
                return keras.losses.get({**identifier, "config": config})
            except (ValueError, TypeError):
                raise unknown from None
        if cls is not None:
            return cls.from_config(config)
        return keras.losses.get({"class_name": keras_name, "config": config})
    raise ValueError(
        f"keras_eql.get: cannot interpret {identifier!r} (type {type(identifier).__name__}); "
        "expected a loss name, a config dict or a keras.losses.Loss instance.")
