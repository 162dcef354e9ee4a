"""Which keras_eql loss trains which output of a compiled model.

`gradient_statistics(model)` and `GradientStatisticsLogger` name each loss
the same way: by the output it trains when the model has several outputs
(the name Keras gives that output's loss in `History`, `<name>_loss`), by the
loss's own name when the model has one output. The pairing of losses and
outputs follows `model.compile`'s rules for a dict, a list and a single loss;
it is read from `model.loss` and the model's outputs, so it needs no training
step and does not touch Keras's compiled state.
"""

from keras_eql._base import EqualizationLoss


def _symbolic_outputs(model):
    """`model.output` (a tensor, list or dict), or None for a model never called symbolically."""
    try:
        return model.output
    except (AttributeError, ValueError, RuntimeError):
        return None


def _output_losses(model):
    """`[(output name or None, loss)]` for every output `compile` gave a loss."""
    loss = getattr(model, "loss", None)
    if loss is None:
        return []
    outputs = _symbolic_outputs(model)
    names = list(getattr(model, "output_names", None) or [])
    if isinstance(loss, dict):  # keyed by output names (or by the keys of dict outputs)
        return [(str(name), value) for name, value in loss.items() if value is not None]
    if isinstance(outputs, dict):  # Keras packs a list onto the sorted keys, or repeats a single loss
        keys = sorted(outputs)
        losses = list(loss) if isinstance(loss, (list, tuple)) else [loss] * len(keys)
        return [(key, value) for key, value in zip(keys, losses) if value is not None]
    if isinstance(loss, (list, tuple)):
        if len(names) != len(loss):
            names = [None] * len(loss)
        return [(name, value) for name, value in zip(names, loss) if value is not None]
    if len(names) > 1:  # one loss for every output
        return [(name, loss) for name in names]
    return [(names[0] if names else None, loss)]


def equalization_losses(model):
    """The keras_eql losses of a compiled model, by the name the logger gives them.

    Args:
        model: a compiled `keras.Model` (its `loss` may be a single loss, a
            list or a dict).

    Returns:
        `{name: loss}` in output order: `name` is the output's name when the
        model has several outputs (the dict key of a dict loss, else the
        output layer's name, as in Keras's `<name>_loss` History keys), and
        the loss's `name` when it has one. A loss shared by two outputs
        appears under both. Outputs without a keras_eql loss are left out.

    Example:
        >>> import keras, keras_eql
        >>> inputs = keras.Input((4,))
        >>> model = keras.Model(inputs, {"cls": keras.layers.Dense(3)(inputs),
        ...                              "box": keras.layers.Dense(4)(inputs)})
        >>> model.compile("sgd", loss={"cls": keras_eql.EqualizedFocalLoss(), "box": "mse"})
        >>> list(equalization_losses(model))
        ['cls']
    """
    pairs = _output_losses(model)
    several = len(pairs) > 1
    found = {}
    for output, loss in pairs:
        if not isinstance(loss, EqualizationLoss):
            continue
        if several and output is not None:
            found[output] = loss
            continue
        name, suffix = loss.name, 1  # no output names: the loss's name, made unique
        while name in found and found[name] is not loss:
            suffix += 1
            name = f"{loss.name}_{suffix}"
        found[name] = loss
    return found


def gradient_statistics(model):
    """Every keras_eql loss's per-class statistics, from any compiled model.

    The statistics accumulate each row's gradient as training saw it, its
    weight included: `sample_weight`, and `class_weight`, which Keras turns
    into one weight per row. `class_weight={k: 3.0}` triples class `k`'s
    positive gradient (and what its rows add to the other classes'
    negatives), so an EQL loss re-balances on top of that weighting.

    Args:
        model: a compiled `keras.Model` with one or several outputs.

    Returns:
        `{name: {"positive": (C,), "negative": (C,), "ratio": (C,)}}`, named
        as `equalization_losses(model)` names the losses (the output's name
        in a model with several outputs, the loss's name otherwise). A loss
        whose statistics are not built yet (`num_classes=None`, not trained)
        is left out.

    Example:
        >>> import keras, keras_eql
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> model.compile("sgd", loss=keras_eql.SoftmaxEQL(num_classes=3))
        >>> {name: stats["ratio"].shape for name, stats in gradient_statistics(model).items()}
        {'softmax_eql': (3,)}
    """
    return {name: loss.gradient_statistics() for name, loss in equalization_losses(model).items()
            if loss.statistics is not None}
