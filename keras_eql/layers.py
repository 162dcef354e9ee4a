"""Keras layers used with the equalization losses: inference scores, the cosine classifier."""

import keras

from keras_eql import functional


@keras.saving.register_keras_serializable(package="keras_eql")
class SigmoidEQLScores(keras.layers.Layer):
    """Turns Sigmoid-EQL logits into detection scores `p_j * (1 - p_bg)`.

    Put it after a classifier trained with `SigmoidEQL(objectness=True)` to
    export a model that serves calibrated scores; it uses only TensorFlow ops,
    so an exported SavedModel needs no keras_eql at serving time.

    Args:
        objectness: multiply by `1 - p_bg` (the authors' `test_with_obj`).
        **kwargs: `keras.layers.Layer` arguments.

    Example:
        >>> import keras, keras_eql
        >>> inputs = keras.Input((8,))
        >>> logits = keras.layers.Dense(4)(inputs)
        >>> scores = keras_eql.SigmoidEQLScores()(logits)
        >>> keras.Model(inputs, scores).output_shape
        (None, 4)
    """

    def __init__(self, objectness=True, **kwargs):
        super().__init__(**kwargs)
        self.objectness = bool(objectness)

    def call(self, logits):
        return functional.sigmoid_eql_scores(logits, objectness=self.objectness)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(objectness=self.objectness)
        return config


def _unit(x, axis):
    """`x / max(||x||, 1e-12)` as torch's `F.normalize`, with a finite gradient at 0.

    From the squared norm: the gradient of `sqrt` at a zero vector (a dead
    ReLU feature) would be 0 * inf = NaN.
    """
    squared = keras.ops.sum(keras.ops.square(x), axis=axis, keepdims=True)
    return x * keras.ops.rsqrt(keras.ops.maximum(squared, 1e-24))


@keras.saving.register_keras_serializable(package="keras_eql")
class CosineClassifier(keras.layers.Layer):
    """Cosine classifier: `temperature * cos(x, w_j)`, the head of the authors' Softmax-EQL recipe.

    The authors train Softmax-EQL on ImageNet-LT with a normalised linear
    classifier (United-Perception's `norm_linear`, temperature 30): features
    and class weights are L2-normalised, so each logit is a cosine similarity
    scaled by `temperature`, and no class can win by a larger weight norm.
    No bias.

    Args:
        units: number of classes.
        temperature: scale of the cosine similarities (> 0).
        kernel_initializer, kernel_regularizer: as for `keras.layers.Dense`.
        **kwargs: `keras.layers.Layer` arguments.

    Example:
        >>> import keras, keras_eql, numpy as np
        >>> head = keras_eql.CosineClassifier(3, temperature=30.0)
        >>> logits = head(np.ones((2, 4), "float32"))
        >>> bool(np.all(np.abs(keras.ops.convert_to_numpy(logits)) <= 30.0 + 1e-4))
        True
    """

    def __init__(self, units, temperature=30.0, kernel_initializer="glorot_uniform",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or int(units) != units or units < 1:
            raise ValueError(f"CosineClassifier: `units` must be a positive integer, got {units!r}.")
        if isinstance(temperature, bool) or not float(temperature) > 0.0:
            raise ValueError(f"CosineClassifier: `temperature` must be > 0, got {temperature!r}.")
        self.units, self.temperature = int(units), float(temperature)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(input_shape[-1], self.units),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer)

    def call(self, features):
        kernel = keras.ops.cast(_unit(self.kernel, axis=0), features.dtype)
        return self.temperature * keras.ops.matmul(_unit(features, axis=-1), kernel)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, temperature=self.temperature,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
                      kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer))
        return config
