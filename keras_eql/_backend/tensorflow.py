"""TensorFlow: the statistics are `tf.Variable`s written in the fused kernels' backward pass."""

from keras_eql._statistics import GradientStatistics

# The fused kernels of `keras_eql._fused` update the statistics; `_forward` is not used.
FORWARD_STATISTICS = False


def make_statistics(num_classes, **options):
    """A `GradientStatistics` (tracked through the loss, saved with the model)."""
    return GradientStatistics(num_classes, **options)


def being_differentiated(y_pred):
    """Unused under TensorFlow: the backward pass itself is the trigger."""
    return False


def attach_losses(model):
    """Nothing to do: the loss's variables are already model state. Returns the model."""
    return model


def make_counts(num_classes, *, name):
    """The online class counts of a baseline loss: `tf.Variable`s added in the backward pass."""
    from keras_eql._backend.tensorflow_counts import ClassCounts

    return ClassCounts(num_classes, name=name)
