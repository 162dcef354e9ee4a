"""TensorFlow's training and `.keras` files, continued under PyTorch.

The runs that tests/fixtures/make_backend_fixtures.py recorded under
TensorFlow (tests/backend_fixtures.py): PyTorch trains the same 8 steps from
the same weights, eagerly and with `jit_compile=True` (`torch.compile`), and
resumes TensorFlow's `.keras` file of step 4 for the last 4; each ends where
TensorFlow ended (weights atol 1e-6, statistics rtol 1e-5), with no
`keras_eql.attach`; JAX's files of step 4 resume the same way. A TensorFlow file of the old statistics format
(Sigmoid-EQL format 1) is reset on load as under TensorFlow.
"""

import functools
import warnings

import keras
import numpy as np
import pytest
import torch

import keras_eql
from backend_fixtures import (BATCH, FIXTURES, assert_saved_statistics, assert_state,
                              fixture_data, fixture_model, record)
from helpers import LOSS_KINDS


def _fit(model, kind, epochs):
    features, labels, weights = fixture_data(kind)
    model.fit(features, labels, sample_weight=weights, batch_size=BATCH, epochs=epochs,
              shuffle=False, verbose=0)


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_torch_trains_and_resumes_like_tensorflow(kind):
    recorded = record(kind)
    model = fixture_model(kind, recorded)
    _fit(model, kind, epochs=2)
    assert_state(model, recorded["final"])

    resumed = keras.models.load_model(FIXTURES / f"tf_{kind}.keras")  # no attach needed
    assert_saved_statistics(resumed, recorded)
    _fit(resumed, kind, epochs=1)
    assert_state(resumed, recorded["final"])


# One per statistics kind (per-sample, gradient of the output).
@pytest.mark.parametrize("kind", ["sigmoid_eql", "efl"])
def test_a_jax_keras_file_resumes_under_torch(kind):
    # JAX's file (tests/fixtures/make_resume_fixtures.py) also holds the statistics
    # as the model's tracked Metric; here they come back through the loss.
    recorded = record(kind)
    resumed = keras.models.load_model(FIXTURES / f"jax_{kind}.keras")
    # JAX recorded its resolved jit_compile=True, i.e. torch.compile here: tracing
    # takes 40 s, and test_jit_compile_trains_like_tensorflow covers it.
    assert resumed.jit_compile
    resumed.jit_compile = False
    for key in ("positive", "negative"):
        np.testing.assert_allclose(resumed.loss.gradient_statistics()[key],
                                   recorded["saved"][key], rtol=1e-5, err_msg=key)
    _fit(resumed, kind, epochs=1)
    assert_state(resumed, recorded["final"])


def test_jit_compile_trains_like_tensorflow(monkeypatch):
    # Keras compiles the step with `torch.compile(step)`, whose default backend
    # (inductor) generates C++ for 40-90 s per loss on this CPU. The
    # aot_eager_decomp_partition debug backend runs the same Dynamo capture,
    # AOT autograd and min-cut partitioner as inductor, without the code
    # generation: the partitioner makes the compiled backward save the
    # statistics' variables themselves, so an in-place update fails there
    # (plain aot_eager saves intermediates and would not see it). One loss
    # runs here; all four match TensorFlow under inductor too (checked by
    # hand, issue #16).
    monkeypatch.setattr(torch, "compile",
                        functools.partial(torch.compile, backend="aot_eager_decomp_partition"))
    kind = "eqfl"
    recorded = record(kind)
    model = fixture_model(kind, recorded, jit_compile=True)
    _fit(model, kind, epochs=2)
    assert model.jit_compile
    assert_state(model, recorded["final"])


def test_a_tensorflow_file_of_statistics_format_1_is_reset_on_load():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.models.load_model(FIXTURES / "v1_sigmoid_eql.keras")
    assert any("format 1" in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert model.loss.statistics.step_count() == 0
    assert not model.loss.gradient_statistics()["positive"].any()
    assert keras_eql.attach(model) is model
