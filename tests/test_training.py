"""Statistics under `model.fit`: XLA, evaluate/predict, steps_per_execution,
loss_weights and mixed precision."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import LOSS_KINDS, NUM_CLASSES, long_tailed_data, make_loss, make_model


def _fit(kind, jit_compile=True, epochs=1, batch_size=16, loss_weights=None,
         optimizer=None, steps_per_execution=1, seed=0, dtype=None, rows=64,
         **loss_kwargs):
    features, labels = long_tailed_data(kind, rows=rows, seed=seed)
    model = make_model(seed, dtype=dtype)
    loss = make_loss(kind, **loss_kwargs)
    model.compile(optimizer or keras.optimizers.SGD(0.1), loss=loss, loss_weights=loss_weights,
                  jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    model.fit(features, labels, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0)
    return model, loss, features, labels


def _eager_reference(kind, epochs=1, batch_size=16, seed=0):
    """The same training as `_fit`, as a plain eager GradientTape loop."""
    features, labels = long_tailed_data(kind, seed=seed)
    model = make_model(seed)
    loss = make_loss(kind)
    optimizer = keras.optimizers.SGD(0.1)
    for _ in range(epochs):
        for start in range(0, len(labels), batch_size):
            x = features[start:start + batch_size]
            y = labels[start:start + batch_size]
            with tf.GradientTape() as tape:
                value = loss(y, model(x, training=True))
            grads = tape.gradient(value, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
    return model, loss


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_fit_jit_matches_eager_loop(kind):
    model, loss, _, _ = _fit(kind, jit_compile=True, epochs=2)
    reference_model, reference = _eager_reference(kind, epochs=2)
    stats, expected = loss.gradient_statistics(), reference.gradient_statistics()
    for key in ("positive", "negative", "ratio"):
        np.testing.assert_allclose(stats[key], expected[key], rtol=1e-5, atol=1e-7, err_msg=key)
    assert float(loss.statistics.steps.numpy()) == 8.0
    for weight, expected_weight in zip(model.weights, reference_model.weights):
        np.testing.assert_allclose(weight.numpy(), expected_weight.numpy(), rtol=1e-5, atol=1e-6)
    assert stats["positive"].sum() > 0 and stats["negative"].sum() > 0


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_evaluate_predict_and_plain_calls_leave_statistics(kind):
    model, loss, features, labels = _fit(kind)
    before = loss.gradient_statistics()
    model.evaluate(features, labels, verbose=0)
    model.predict(features, verbose=0)
    loss(labels, model(features))
    after = loss.gradient_statistics()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])


@pytest.mark.parametrize("jit_compile", [False, True])
def test_steps_per_execution_counts_every_step_once(jit_compile):
    _, loss, _, _ = _fit("efl", jit_compile=jit_compile, steps_per_execution=3)
    _, reference = _eager_reference("efl")
    assert float(loss.statistics.steps.numpy()) == 4.0
    np.testing.assert_allclose(loss.gradient_statistics()["positive"],
                               reference.gradient_statistics()["positive"], rtol=1e-5)


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_compile_loss_weights_do_not_reach_statistics(kind):
    # One step: afterwards the weights differ, the first increments must not.
    _, weighted, _, _ = _fit(kind, batch_size=64, loss_weights=0.25)
    _, plain, _, _ = _fit(kind, batch_size=64)
    for key in ("positive", "negative"):
        np.testing.assert_allclose(weighted.gradient_statistics()[key],
                                   plain.gradient_statistics()[key], rtol=1e-5)


def test_sample_weight_reaches_statistics():
    features, labels = long_tailed_data("sigmoid_eql")
    logits = tf.constant(make_model()(features))
    statistics = []
    for weight in (1.0, 3.0):
        loss = make_loss("sigmoid_eql", num_classes=NUM_CLASSES)
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = loss(labels, logits, sample_weight=np.full(len(labels), weight))
        tape.gradient(value, logits)
        statistics.append(loss.gradient_statistics())
    np.testing.assert_allclose(statistics[1]["positive"], 3 * statistics[0]["positive"], rtol=1e-5)
    np.testing.assert_allclose(statistics[1]["ratio"], statistics[0]["ratio"], rtol=1e-5)


@pytest.mark.parametrize("policy, rtol", [("mixed_float16", 1e-2), ("mixed_bfloat16", 2e-2)])
@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_mixed_precision_statistics_match_float32(kind, policy, rtol):
    # 256 rows in 4 steps: the rarest class still has a handful of positives,
    # so its sums are not a single half-precision-rounded element.
    _, reference, _, _ = _fit(kind, jit_compile=True, rows=256, batch_size=64)
    keras.config.set_dtype_policy(policy)
    try:
        model, loss, _, _ = _fit(kind, jit_compile=True, rows=256, batch_size=64)
    finally:
        keras.config.set_dtype_policy("float32")
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    stats, expected = loss.gradient_statistics(), reference.gradient_statistics()
    assert loss.statistics.positive.dtype == tf.float32
    for key in ("positive", "negative", "ratio"):
        np.testing.assert_allclose(stats[key], expected[key], rtol=rtol, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_forced_loss_scale_overflow_keeps_statistics_finite(kind):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        optimizer = keras.optimizers.LossScaleOptimizer(
            keras.optimizers.SGD(0.1), initial_scale=2.0 ** 40)
        model, loss, _, _ = _fit(kind, optimizer=optimizer)
    finally:
        keras.config.set_dtype_policy("float32")
    stats = loss.gradient_statistics()
    for key in ("positive", "negative", "ratio"):
        assert np.all(np.isfinite(stats[key])), (key, stats[key])
    assert np.all(stats["positive"] >= 0) and np.all(stats["negative"] >= 0)
    # The scale overflowed at least once, so the optimizer lowered it.
    assert float(model.optimizer.dynamic_scale.numpy()) < 2.0 ** 40
