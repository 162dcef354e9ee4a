"""`fit`, `evaluate`, `predict`, `attach` and `.keras` saving under KERAS_BACKEND=torch.

The PyTorch trainer is stateful: the loss's own variables keep what the
step assigns, with no `keras_eql.attach` (a no-op returning the model).
`fit` is checked against TensorFlow's recorded runs in
test_torch_cross_backend.py; here, what must not move the statistics and
what must carry them.
"""

import keras
import numpy as np
import pytest
import torch

import keras_eql
from backend_fixtures import (BATCH, ROWS, assert_state, fixture_data, fixture_model, record)
from helpers import FEATURES, NUM_CLASSES, make_loss


def _assert_unchanged(loss, before, steps):
    after = loss.gradient_statistics()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    assert loss.statistics.step_count() == steps


@pytest.mark.parametrize("kind", ["sigmoid_eql", "softmax_eql"])
def test_evaluate_predict_and_validation_leave_the_statistics(kind):
    features, labels, weights = fixture_data(kind)
    model = fixture_model(kind, record(kind))
    model.fit(features, labels, sample_weight=weights, batch_size=BATCH, epochs=1, shuffle=False,
              verbose=0, validation_data=(features, labels))
    steps = ROWS // BATCH
    assert model.loss.statistics.step_count() == steps
    before = model.loss.gradient_statistics()
    model.evaluate(features, labels, batch_size=BATCH, verbose=0)
    model.test_on_batch(features[:BATCH], labels[:BATCH])
    model.predict(features, batch_size=BATCH, verbose=0)
    _assert_unchanged(model.loss, before, steps)
    model.train_on_batch(features[:BATCH], labels[:BATCH])
    assert model.loss.statistics.step_count() == steps + 1


def test_run_eagerly_trains_like_tensorflow():
    kind = "softmax_eql"
    recorded = record(kind)
    features, labels, weights = fixture_data(kind)
    model = fixture_model(kind, recorded, run_eagerly=True)
    model.fit(features, labels, sample_weight=weights, batch_size=BATCH, epochs=2, shuffle=False,
              verbose=0)
    assert_state(model, recorded["final"])


def test_attach_is_a_no_op_that_returns_the_model():
    model = fixture_model("efl", record("efl"))
    variables = [id(v) for v in model.variables + model.metrics_variables]
    assert keras_eql.attach(model) is model
    assert [id(v) for v in model.variables + model.metrics_variables] == variables
    assert not hasattr(model, "_keras_eql_statistics_0")


def test_a_lazy_loss_builds_on_its_first_step():
    features, labels, _ = fixture_data("softmax_eql")
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(NUM_CLASSES)])
    model.compile(optimizer="sgd", loss=keras_eql.SoftmaxEQL())
    model.fit(features, labels, batch_size=BATCH, epochs=1, verbose=0)
    assert model.loss.num_classes == NUM_CLASSES
    assert model.loss.statistics.step_count() == ROWS // BATCH


def test_keras_save_load_restores_the_statistics_and_resumes(tmp_path):
    kind = "eqfl"
    recorded = record(kind)
    features, labels, weights = fixture_data(kind)
    fit = dict(sample_weight=weights, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    model = fixture_model(kind, recorded)
    model.fit(features, labels, **fit)
    path = tmp_path / "model.keras"
    model.save(path)
    saved = model.loss.gradient_statistics()

    loaded = keras.models.load_model(path)
    _assert_unchanged(loaded.loss, saved, ROWS // BATCH)
    loaded.fit(features, labels, **fit)
    assert_state(loaded, recorded["final"])
    resumed = keras_eql.load_model(path)
    _assert_unchanged(resumed.loss, saved, ROWS // BATCH)


def test_loss_weights_and_the_loss_scale_stay_out_of_the_statistics():
    kind = "softmax_eql"
    features, labels, weights = fixture_data(kind)
    results = []
    for options in ({}, {"loss_weights": 3.0},
                    {"optimizer": keras.optimizers.LossScaleOptimizer(
                        keras.optimizers.SGD(0.5), initial_scale=1024.0)}):
        model = fixture_model(kind, record(kind), **options)
        model.fit(features[:BATCH], labels[:BATCH], sample_weight=weights[:BATCH],
                  batch_size=BATCH, epochs=1, verbose=0)
        results.append(model.loss.gradient_statistics())
    for other in results[1:]:
        for key in ("positive", "negative"):
            np.testing.assert_allclose(other[key], results[0][key], rtol=1e-6, err_msg=key)


def test_a_custom_loop_updates_once_per_differentiated_call():
    loss = make_loss("efl", num_classes=NUM_CLASSES)
    labels = torch.tensor(np.arange(8) % (NUM_CLASSES + 1))
    logits = torch.zeros((8, NUM_CLASSES), requires_grad=True)
    weights = torch.linspace(0.5, 1.5, 8)
    kept = weights.clone()
    loss(labels, logits, weights).backward()
    assert loss.statistics.step_count() == 1
    # The caller's sample weights are not changed (Keras's mask multiplies in place).
    torch.testing.assert_close(weights, kept, rtol=0, atol=0)
    before = loss.gradient_statistics()
    with torch.no_grad():
        loss(labels, logits, weights)
    frozen = make_loss("efl", num_classes=NUM_CLASSES, update_statistics=False)
    frozen(labels, logits).backward()
    assert frozen.statistics.step_count() == 0
    _assert_unchanged(loss, before, 1)
