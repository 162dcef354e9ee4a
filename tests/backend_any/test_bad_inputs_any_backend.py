"""Bad labels and non-finite logits under JAX and PyTorch, as under TensorFlow.

As under TensorFlow's XLA (`tests/test_reliability_bad_input.py`), a compiled
step cannot raise on a label value: the step's loss is NaN, the weights and
statistics do not move, `loss.bad_label()` holds the first bad value and
`GradientStatisticsLogger` raises it with the loss's conventions. A NaN or
infinite logit makes the sigmoid losses' loss NaN and drops the step from
the statistics.
"""

import keras
import numpy as np
import pytest

import keras_eql

C = 4
# torch.compile takes about 10 s a model on a CPU: under PyTorch only the
# logger test (and the evaluate one) compile; jax.jit is cheap.
COMPILED = keras.backend.backend() != "torch"


def _model(loss, jit_compile):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(C)])
    model.compile(keras.optimizers.SGD(0.1), loss=loss, jit_compile=jit_compile)
    return keras_eql.attach(model)


def _data():
    features = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    labels = np.array([0, 1, 2, 3, 0, C + 2, 1, 2])  # the second batch of 4 is bad
    return features, labels


@pytest.mark.parametrize("jit_compile", [True, False])
def test_logger_raises_a_bad_label_met_in_fit(jit_compile):
    model = _model(keras_eql.EqualizedFocalLoss(num_classes=C), jit_compile)
    features, labels = _data()
    with pytest.raises(ValueError) as error:
        model.fit(features, labels, batch_size=4, epochs=2, verbose=0, shuffle=False,
                  callbacks=[keras.callbacks.TerminateOnNaN(),
                             keras_eql.GradientStatisticsLogger()])
    message = str(error.value)
    assert "EqualizedFocalLoss" in message and f"label {C + 2}" in message
    assert f"0..{C}" in message and "validate_labels" in message
    # Only the good first step counted; the raise cleared the record.
    assert model.loss.statistics.step_count() == 1
    assert model.loss.bad_label() is None


def test_a_bad_step_moves_nothing_and_is_recorded_once():
    model = _model(keras_eql.SigmoidEQL(num_classes=C), jit_compile=COMPILED)
    features, labels = _data()
    model.fit(features[:4], labels[:4], batch_size=4, verbose=0)
    weights = [np.array(w) for w in model.get_weights()]
    statistics = model.loss.gradient_statistics()
    history = model.fit(features[4:], labels[4:], batch_size=4, verbose=0)
    assert np.isnan(history.history["loss"][0])
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    for key, value in model.loss.gradient_statistics().items():
        np.testing.assert_array_equal(value, statistics[key])
    assert model.loss.bad_label() == C + 2
    assert model.loss.bad_label() is None  # read once, then cleared


def test_evaluate_records_a_bad_label_too():
    model = _model(keras_eql.EqualizedQualityFocalLoss(num_classes=C), jit_compile=True)
    features, _ = _data()
    targets = np.zeros((8, C), "float32")
    targets[np.arange(8), np.arange(8) % C] = 1.0
    targets[6, 1] = 1.5  # a quality above 1
    assert np.isnan(model.evaluate(features, targets, verbose=0))
    assert model.loss.bad_label() == 1.5
    assert model.loss.statistics.step_count() == 0


def test_good_labels_record_nothing():
    model = _model(keras_eql.SoftmaxEQL(num_classes=C), jit_compile=COMPILED)
    features, labels = _data()
    labels[5] = 1
    model.fit(features, labels, batch_size=4, epochs=2, verbose=0,
              callbacks=[keras_eql.GradientStatisticsLogger()])
    assert model.loss.bad_label() is None
    assert model.loss.statistics.step_count() == 4


class _Bias(keras.layers.Layer):
    """logits = inputs + a trainable bias: a test puts any value into a logit."""

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(input_shape[-1],), initializer="zeros")

    def call(self, inputs):
        return inputs + self.bias


@pytest.mark.parametrize("name", ["SigmoidEQL", "EqualizedFocalLoss",
                                  "EqualizedQualityFocalLoss", "SoftmaxEQL"])
def test_a_non_finite_logit_drops_the_step_and_the_sigmoid_losses_report_it(name):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((C,)), _Bias()])
    model.compile(keras.optimizers.SGD(0.1), loss=getattr(keras_eql, name)(num_classes=C),
                  jit_compile=COMPILED)
    keras_eql.attach(model)
    logits = np.random.default_rng(1).normal(size=(4, C)).astype("float32")
    labels = np.array([0, 1, 2, 3]) % C
    model.fit(logits, labels, batch_size=4, verbose=0)
    statistics = model.loss.gradient_statistics()
    for bad in (np.nan, np.inf, -np.inf):
        poisoned = logits.copy()
        poisoned[1, 2] = bad  # a negative of row 1
        value = model.fit(poisoned, labels, batch_size=4, verbose=0).history["loss"][0]
        if name != "SoftmaxEQL" or np.isnan(bad):
            assert not np.isfinite(value), (bad, value)
        for key, array in model.loss.gradient_statistics().items():
            np.testing.assert_array_equal(array, statistics[key], err_msg=f"{bad} {key}")
        assert model.loss.statistics.step_count() == 1
