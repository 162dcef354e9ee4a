"""Golden parity under KERAS_BACKEND=jax, every step: loss, gradient w.r.t. the logits, statistics.

The same golden files, label mappings and tolerances as tests/test_golden.py
(loss rtol 1e-5, gradient atol 1e-5 * max|g|, statistics rtol 1e-5). A step
is `jax.value_and_grad` of `loss.stateless_call` under `jax.jit` (and
eagerly for three files): the statistics move only because the loss is
differentiated.
"""

import jax
import numpy as np
import pytest

from golden_cases import GOLDEN_NAMES, assert_golden_step, golden_case


def _case(name):
    """(golden, loss, per-step (labels, weights)), the same cases as tests/test_golden.py."""
    golden, make, inputs = golden_case(name)
    return golden, make(lazy=False), inputs


def _runner(loss, mode):
    def step(state, labels, logits, weights):
        def value(z):
            return loss.stateless_call(state, labels, z, weights)

        (total, state), grad = jax.value_and_grad(value, has_aux=True)(logits)
        return total, grad, state

    return jax.jit(step) if mode == "jit" else step


# Every file jitted; eagerly (the gate without jit, slower) one per statistics kind.
CASES = [(name, "jit") for name in GOLDEN_NAMES] + [
    ("sigmoid_eql_varying_rows", "eager"), ("softmax_eql_tau05_lw2", "eager"), ("eqfl", "eager")]


@pytest.mark.parametrize("name,mode", CASES)
def test_golden_parity_jax(name, mode):
    golden, loss, inputs = _case(name)
    step = _runner(loss, mode)
    state = [v.value for v in loss.statistics.variables]
    for t, (labels, weights) in enumerate(inputs):
        logits = np.asarray(golden["logits"][t], np.float32)
        value, grad, state = step(state, labels, logits, weights)
        # The values a training step hands back to the model's variables.
        for variable, new in zip(loss.statistics.variables, state):
            variable.assign(new)
        assert_golden_step(golden, t, value, grad, loss.gradient_statistics())
    assert loss.statistics.step_count() == len(inputs)


def test_a_plain_call_leaves_the_statistics_alone():
    golden, loss, inputs = _case("efl")
    labels, _ = inputs[0]
    value = loss(labels, np.asarray(golden["logits"][0], np.float32))
    np.testing.assert_allclose(float(value), golden["loss"][0], rtol=1e-5)
    jitted = jax.jit(lambda z: loss(labels, z))(np.asarray(golden["logits"][0], np.float32))
    np.testing.assert_allclose(float(jitted), golden["loss"][0], rtol=1e-5)
    assert loss.statistics.step_count() == 0


def test_call_returns_the_rows_and_leaves_the_statistics_alone():
    golden, loss, inputs = _case("softmax_eql")
    labels, weights = inputs[0]
    logits = np.asarray(golden["logits"][0], np.float32)
    rows = jax.grad(lambda z: loss.call(labels, z).sum())(logits)  # differentiated, no update
    assert rows.shape == logits.shape
    np.testing.assert_allclose(float(loss.call(labels, logits).mean() * weights[0]),
                               golden["loss"][0], rtol=1e-5)
    assert loss.statistics.step_count() == 0
