"""Keras layers for inference with the equalization losses."""

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
