"""The one place that knows the Keras backend: where the statistics live and what updates them.

* TensorFlow (`tensorflow.py`): `GradientStatistics`, `tf.Variable`s updated
  in the fused kernels' backward pass; nothing to attach.
* JAX (`jax.py`): the statistics are a `keras.metrics.Metric` that the model
  must track (`keras_eql.attach(model)`), updated in the forward pass when a
  trace-time gate says the loss is being differentiated
  (`keras_eql._forward`).
* PyTorch (`torch.py`): the same forward-pass update and statistics
  (`_forward_state`), in variables the loss owns; the trainer is stateful,
  so there is nothing to attach, and the gate is autograd's grad mode.

Everything else (the math in `keras_eql._rows`, the Keras classes) is
written once. Each module offers the same small interface:

* `FORWARD_STATISTICS`: whether the losses run `keras_eql._forward`.
* `make_statistics(num_classes, *, initial_ratio, clip_ratio, decay,
  minimum_format, name)`: the statistics object.
* `being_differentiated(y_pred)`: the gate (forward backends only).
* `attach_losses(model)`: what `keras_eql.attach` does, a no-op where nothing is needed.
"""

import keras

BACKEND = keras.backend.backend()
SUPPORTED = ("tensorflow", "jax", "torch")

if BACKEND == "tensorflow":
    from keras_eql._backend.tensorflow import (FORWARD_STATISTICS, attach_losses,  # noqa: F401
                                               being_differentiated, make_statistics)
elif BACKEND == "jax":
    from keras_eql._backend.jax import (FORWARD_STATISTICS, attach_losses,  # noqa: F401
                                        being_differentiated, make_statistics)
elif BACKEND == "torch":
    from keras_eql._backend.torch import (FORWARD_STATISTICS, attach_losses,  # noqa: F401
                                          being_differentiated, make_statistics)
else:
    FORWARD_STATISTICS = True

    def make_statistics(num_classes, *, name, **options):
        raise NotImplementedError(
            f"keras_eql: the statistics of loss '{name}' run under KERAS_BACKEND=tensorflow, "
            f"jax or torch; {BACKEND!r} is not supported yet (keras_eql issue #16).")

    def being_differentiated(y_pred):
        return False

    def attach_losses(model):
        return model


def check_supported(loss_name):
    """Raise, naming the loss, on a backend whose statistics are not implemented yet."""
    if BACKEND not in SUPPORTED:
        raise NotImplementedError(
            f"{loss_name}: keras_eql's Equalization Losses run under KERAS_BACKEND=tensorflow, "
            f"jax or torch; {BACKEND!r} is not supported yet (keras_eql issue #16).")


def attach(model):
    """Make the keras_eql losses' statistics part of a compiled model's state.

    Needed under the JAX backend, where a training step only carries state
    that the model tracks: call it after `model.compile(...)`, and again
    after `keras.models.load_model(...)` (`keras_eql.load_model` does it) or
    a compile with new loss objects. Forgotten, `fit()` (and `evaluate()`)
    raise an error that says so before their first step, with the model
    intact; nothing is lost silently. Under TensorFlow and PyTorch it does
    nothing, so one script runs on every backend.

    Under JAX a loss built with `num_classes=None` gets its statistics here,
    from the width of the model output it trains.

    Args:
        model: a compiled `keras.Model`.

    Returns:
        `model`.

    Raises:
        ValueError: (JAX) the model is not compiled, or a loss's number of
            classes cannot be read from its output.

    Example:
        >>> import keras, keras_eql
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> model.compile("sgd", loss=keras_eql.EqualizedFocalLoss())
        >>> keras_eql.attach(model) is model
        True
    """
    return attach_losses(model)
