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
* `make_counts(num_classes, *, name)`: the per-class sample counts of the
  baselines with state (Seesaw, online Logit-Adjusted / Balanced Softmax):
  TensorFlow's `ClassCounts` (`tensorflow_counts.py`, backward-pass update),
  or `_forward_state.ForwardCounts` updated in the forward pass behind the
  same gate as the statistics (JAX, PyTorch).

`sum_over_replicas` sums a step's counts over `tf.distribute` replicas (a
JAX or PyTorch step already sees the global batch).
"""

import keras

BACKEND = keras.backend.backend()
SUPPORTED = ("tensorflow", "jax", "torch")

if BACKEND == "tensorflow":
    from keras_eql._backend.tensorflow import (FORWARD_STATISTICS, attach_losses,  # noqa: F401
                                               being_differentiated, make_counts, make_statistics)
elif BACKEND == "jax":
    from keras_eql._backend.jax import (FORWARD_STATISTICS, attach_losses,  # noqa: F401
                                        being_differentiated, make_counts, make_statistics)
elif BACKEND == "torch":
    from keras_eql._backend.torch import (FORWARD_STATISTICS, attach_losses,  # noqa: F401
                                          being_differentiated, make_counts, make_statistics)
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

    def make_counts(num_classes, *, name):
        raise NotImplementedError(
            f"keras_eql: the class counts of loss '{name}' run under KERAS_BACKEND=tensorflow, "
            f"jax or torch; {BACKEND!r} is not supported yet (keras_eql issue #16).")


def sum_over_replicas(value):
    """`value` summed over `tf.distribute` replicas (TensorFlow); unchanged elsewhere."""
    if BACKEND == "tensorflow":
        from keras_eql._statistics import all_reduce_sum

        (value,) = all_reduce_sum(value)
    return value


def one_hot(labels, depth):
    """float32 one-hot rows of integer `labels`.

    Under TensorFlow `tf.one_hot` on the labels' own integer type (Keras's
    `ops.one_hot` casts them to int64 first; see `sparse_softmax_cross_entropy`).
    """
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.one_hot(labels, depth, dtype=tf.float32)
    return keras.ops.one_hot(labels, depth, dtype="float32")


def sparse_softmax_cross_entropy(labels, logits):
    """Softmax cross-entropy of integer `labels` `(...)` and `logits` `(..., C)`, per row.

    Under TensorFlow the TF kernel on the labels' own integer type: Keras's
    `ops.sparse_categorical_crossentropy` casts them to int64 first, which
    makes XLA compare 64-bit ids against every column.
    """
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return keras.ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def is_symbolic(value):
    """Whether `value` is a traced tensor whose values are unknown now (no NumPy check possible)."""
    if isinstance(value, keras.KerasTensor):
        return True
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.is_symbolic_tensor(value)
    if BACKEND == "jax":
        import jax

        return isinstance(value, jax.core.Tracer)
    return False


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
