"""Pick any loss by name: `keras_eql.get` and `keras_eql.available_losses`.

Short names (see `available_losses()`) and class names resolve to the
keras_eql losses and to Keras' own plain baselines. The Keras ones are built
with `from_logits=True`, because every keras_eql loss takes raw logits and a
benchmark must feed the same model output to all of them; pass
`from_logits=False` to override.

`model.compile(loss="efl")` raises, naming the fix: Keras 3.15 builds a loss
given by name inside the model, where its statistics are out of reach
(`model.loss` stays the string) and are not restored by a `.keras` round trip
(Keras builds that loss only at the first step after loading). Compile with
an instance instead: `loss=keras_eql.get("efl")`.
"""

import keras
import keras.src.losses

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

# Losses that cannot be built without arguments: (what to pass, any of these arguments).
_REQUIRED_ARGUMENTS = {
    baselines.EQLv1: ("rare_mask or class_frequencies", ("rare_mask", "class_frequencies")),
    baselines.ClassBalancedLoss: ("class_counts", ("class_counts",)),
}

_PACKAGE_PREFIX = "keras_eql>"


def available_losses():
    """The short names `get` accepts, one per loss, with the arguments each needs.

    Class names (`"SeesawLoss"`, `"BinaryCrossentropy"`, ...) and registered
    names (`"keras_eql>SeesawLoss"`) are accepted too.

    Returns:
        A dict `{name: required}`, the keras_eql losses, then Keras' plain
        baselines. `required` is None when `get(name)` builds the loss with
        its defaults, else the arguments it needs (e.g. `"class_counts"`).

    Example:
        >>> from keras_eql.registry import available_losses
        >>> "seesaw" in available_losses()
        True
        >>> available_losses()["class_balanced"]
        'class_counts'
        >>> [name for name, required in available_losses().items() if required]
        ['eql_v1', 'class_balanced']
    """
    names = {name: _REQUIRED_ARGUMENTS.get(cls, (None,))[0] for name, cls in _KERAS_EQL_LOSSES.items()}
    names.update({name: None for name in _KERAS_LOSSES})
    return names


def _construct(cls, config, name):
    """`cls.from_config(config)`, first naming the arguments a loss cannot do without."""
    required, alternatives = _REQUIRED_ARGUMENTS.get(cls, (None, ()))
    if required and all(config.get(argument) is None for argument in alternatives):
        raise ValueError(
            f"keras_eql.get: {name!r} ({cls.__name__}) cannot be built without arguments; "
            f"pass {required}, e.g. keras_eql.get({name!r}, {alternatives[0]}=...).")
    return cls.from_config(config)


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
        return _construct(cls, config, name)
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
            return _construct(cls, config, name)
        return keras.losses.get({"class_name": keras_name, "config": config})
    raise ValueError(
        f"keras_eql.get: cannot interpret {identifier!r} (type {type(identifier).__name__}); "
        "expected a loss name, a config dict or a keras.losses.Loss instance.")


class _NamedLoss:
    """What Keras's table of loss names holds for a keras_eql short name: building it raises."""

    short_name = None

    def __init__(self):
        cls = _KERAS_EQL_LOSSES[self.short_name]
        raise ValueError(
            f"keras_eql: loss={self.short_name!r} given by name to compile(): Keras builds such a "
            "loss inside the model, where its statistics are out of reach (model.loss stays the "
            "string) and a .keras round trip loses them. Pass an instance: "
            f"loss=keras_eql.get({self.short_name!r}) or keras_eql.{cls.__name__}(...).")


def _register_short_names_with_keras():
    """Make `compile(loss="efl")` fail with the fix instead of "Could not interpret".

    Keras 3.15 resolves a loss string only through its own name table
    (`keras.losses.get` ignores registered custom objects). Only names Keras
    does not use are added; class names are left out, because Keras's
    deserialization also looks them up in that table.
    """
    table = getattr(keras.src.losses, "ALL_OBJECTS_DICT", None)
    if not isinstance(table, dict):
        return
    for short_name in _KERAS_EQL_LOSSES:
        table.setdefault(short_name, type(_NamedLoss.__name__, (_NamedLoss,), {"short_name": short_name}))


_register_short_names_with_keras()
