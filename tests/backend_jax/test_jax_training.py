"""`fit`, `evaluate`, `predict`, `attach` and `.keras` saving under KERAS_BACKEND=jax.

`fit` is compared with a reference loop: SGD in NumPy on a linear model,
each step's gradient w.r.t. the logits and statistics taken from
`loss.stateless_call` under `jax.value_and_grad` (the step that
test_jax_golden.py checks against the golden vectors). So the training
plumbing (the model tracking the statistics, the gate, the trainer carrying
them through jitted steps) is what is tested here. Tolerances: statistics
rtol 1e-5, weights atol 1e-6.
"""

import jax
import keras
import numpy as np
import pytest

import keras_eql
from helpers import FEATURES, NUM_CLASSES, long_tailed_data, make_loss

ROWS, BATCH, EPOCHS, LEARNING_RATE = 64, 16, 2, 0.5


def _linear_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(NUM_CLASSES)])


def _data(kind):
    features, labels = long_tailed_data(kind, rows=ROWS)
    weights = np.linspace(0.5, 1.5, ROWS).astype("float32")
    return features, labels, weights


def _compiled(kind, **options):
    model = _linear_model()
    options.setdefault("optimizer", keras.optimizers.SGD(LEARNING_RATE))
    model.compile(loss=make_loss(kind, num_classes=NUM_CLASSES), **options)
    return keras_eql.attach(model)


def _reference(kind, kernel, bias, features, labels, weights, steps):
    """(kernel, bias, statistics) after `steps` SGD steps of the loss's stateless step."""
    loss = make_loss(kind, num_classes=NUM_CLASSES)
    state = [v.value for v in loss.statistics.variables]
    kernel, bias = np.array(kernel), np.array(bias)
    step = jax.jit(lambda state, y, z, w: jax.value_and_grad(
        lambda z: loss.stateless_call(state, y, z, w), has_aux=True)(z))
    for t in range(steps):
        rows = slice((t * BATCH) % ROWS, (t * BATCH) % ROWS + BATCH)
        x = features[rows]
        (_, state), grad = step(state, labels[rows], x @ kernel + bias, weights[rows])
        grad = np.asarray(grad)
        kernel = kernel - LEARNING_RATE * (x.T @ grad)
        bias = bias - LEARNING_RATE * grad.sum(0)
    for variable, value in zip(loss.statistics.variables, state):
        variable.assign(value)
    return kernel, bias, loss.gradient_statistics(), loss.statistics.step_count()


def _assert_matches(model, reference):
    kernel, bias, stats, steps = reference
    np.testing.assert_allclose(model.layers[-1].kernel.numpy(), kernel, rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.layers[-1].bias.numpy(), bias, rtol=0, atol=1e-6)
    actual = model.loss.gradient_statistics()
    for key in ("positive", "negative", "ratio"):
        np.testing.assert_allclose(actual[key], stats[key], rtol=1e-5, atol=1e-12, err_msg=key)
    assert model.loss.statistics.step_count() == steps


# Per-sample and upstream-weighted statistics; test_jax_cross_backend.py fits all four
# losses against TensorFlow's fit.
@pytest.mark.parametrize("kind", ["sigmoid_eql", "softmax_eql"])
def test_fit_equals_the_reference_loop_and_evaluate_predict_leave_the_statistics(kind):
    features, labels, weights = _data(kind)
    model = _compiled(kind)
    kernel, bias = (w.numpy() for w in model.layers[-1].weights)
    model.fit(features, labels, sample_weight=weights, batch_size=BATCH, epochs=EPOCHS,
              shuffle=False, verbose=0)
    steps = EPOCHS * ROWS // BATCH
    _assert_matches(model, _reference(kind, kernel, bias, features, labels, weights, steps))
    before = model.loss.gradient_statistics()
    model.evaluate(features, labels, batch_size=BATCH, verbose=0)
    model.predict(features, batch_size=BATCH, verbose=0)
    after = model.loss.gradient_statistics()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
    assert model.loss.statistics.step_count() == steps


def test_validation_data_does_not_move_the_statistics():
    features, labels, weights = _data("efl")
    model = _compiled("efl", jit_compile=False)
    model.fit(features, labels, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
              validation_data=(features, labels))
    assert model.loss.statistics.step_count() == ROWS // BATCH


def test_forgotten_attach_raises_says_what_to_call_and_keeps_the_model():
    kind = "sigmoid_eql"
    features, labels, weights = _data(kind)
    model = _linear_model()
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE),
                  loss=make_loss(kind, num_classes=NUM_CLASSES))
    kernel, bias = (w.numpy() for w in model.layers[-1].weights)
    with pytest.raises(RuntimeError, match=r"keras_eql\.attach\(model\)"):
        model.fit(features, labels, batch_size=BATCH, epochs=1, verbose=0)
    assert model.loss.statistics.step_count() == 0
    # Raised before the JAX trainer took the variables: attach and train on.
    keras_eql.attach(model).fit(features, labels, sample_weight=weights, batch_size=BATCH,
                                epochs=EPOCHS, shuffle=False, verbose=0)
    steps = EPOCHS * ROWS // BATCH
    _assert_matches(model, _reference(kind, kernel, bias, features, labels, weights, steps))


def test_attach_builds_a_lazy_loss_and_is_idempotent():
    model = _linear_model()
    model.compile(optimizer="sgd", loss=keras_eql.SoftmaxEQL())
    assert keras_eql.attach(keras_eql.attach(model)) is model
    assert model.loss.num_classes == NUM_CLASSES
    variables = [id(v) for v in model.metrics_variables]
    assert all(variables.count(id(v)) == 1 for v in model.loss.statistics.variables)


def test_attach_needs_a_compiled_model():
    with pytest.raises(ValueError, match="compile the model first"):
        keras_eql.attach(_linear_model())


def test_keras_save_load_restores_the_statistics_and_resumes_after_attach(tmp_path):
    kind = "eqfl"
    features, labels, weights = _data(kind)
    model = _compiled(kind)
    kernel, bias = (w.numpy() for w in model.layers[-1].weights)
    fit = dict(sample_weight=weights, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    model.fit(features, labels, **fit)
    path = tmp_path / "model.keras"
    model.save(path)
    saved = model.loss.gradient_statistics()

    loaded = keras.models.load_model(path)
    restored = loaded.loss.gradient_statistics()
    for key in saved:
        np.testing.assert_array_equal(restored[key], saved[key])
    assert loaded.loss.statistics.step_count() == ROWS // BATCH
    with pytest.raises(RuntimeError, match="attach"):
        loaded.fit(features, labels, **fit)

    loaded = keras_eql.attach(keras.models.load_model(path))
    loaded.fit(features, labels, **fit)
    steps = 2 * ROWS // BATCH
    _assert_matches(loaded, _reference(kind, kernel, bias, features, labels, weights, steps))


def test_keras_eql_load_model_attaches(tmp_path):
    features, labels, _ = _data("softmax_eql")
    model = _compiled("softmax_eql")
    model.fit(features, labels, batch_size=BATCH, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras_eql.load_model(tmp_path / "model.keras")
    loaded.fit(features, labels, batch_size=BATCH, epochs=1, verbose=0)
    assert loaded.loss.statistics.step_count() == 2 * ROWS // BATCH


def test_recompiling_with_the_same_loss_keeps_the_link_and_a_new_loss_needs_attach():
    features, labels, _ = _data("efl")
    model = _compiled("efl", steps_per_execution=2)
    loss = model.loss
    model.compile(optimizer="sgd", loss=loss)
    model.fit(features, labels, batch_size=BATCH, epochs=1, verbose=0)
    assert loss.statistics.step_count() == ROWS // BATCH
    model.compile(optimizer="sgd", loss=make_loss("efl", num_classes=NUM_CLASSES))
    with pytest.raises(RuntimeError, match="attach"):
        model.fit(features, labels, batch_size=BATCH, epochs=1, verbose=0)
    keras_eql.attach(model).fit(features, labels, batch_size=BATCH, epochs=1, verbose=0)
    assert model.loss.statistics.step_count() == ROWS // BATCH


def test_loss_weights_and_the_loss_scale_stay_out_of_the_statistics():
    features, labels, weights = _data("softmax_eql")
    batch = dict(sample_weight=weights[:BATCH], batch_size=BATCH, epochs=1, verbose=0)
    results = []
    for options in ({}, {"loss_weights": 3.0},
                    {"optimizer": keras.optimizers.LossScaleOptimizer(
                        keras.optimizers.SGD(LEARNING_RATE), initial_scale=1024.0)}):
        model = _compiled("softmax_eql", **options)
        model.fit(features[:BATCH], labels[:BATCH], **batch)
        results.append(model.loss.gradient_statistics())
    for other in results[1:]:
        for key in ("positive", "negative"):
            np.testing.assert_allclose(other[key], results[0][key], rtol=1e-6, err_msg=key)
