"""Golden parity under KERAS_BACKEND=torch, every step: loss, gradient w.r.t. logits, statistics.

The golden files, label mappings and tolerances of tests/test_golden.py
(loss rtol 1e-5, gradient atol 1e-5 * max|g|, statistics rtol 1e-5). A
step calls the loss on logits that require a gradient and runs
`backward()`, as Keras's PyTorch trainer does: the statistics move because
autograd records the call, never in a call under `torch.no_grad()`.
"""

import numpy as np
import pytest
import torch

from golden_cases import GOLDEN_NAMES, assert_golden_step, golden_case


def _step(loss, labels, logits, weights):
    """(loss, gradient w.r.t. the logits) of one differentiated call."""
    logits = torch.tensor(np.asarray(logits, np.float32), requires_grad=True)
    value = loss(labels, logits, weights)
    value.backward()
    return value.detach().numpy(), logits.grad.numpy()


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_golden_parity_torch(name):
    golden, make, inputs = golden_case(name)
    loss = make(lazy=name == "sigmoid_eql_varying_rows")  # one file builds on its first call
    for t, (labels, weights) in enumerate(inputs):
        value, grad = _step(loss, labels, golden["logits"][t], weights)
        assert_golden_step(golden, t, value, grad, loss.gradient_statistics())
    assert loss.statistics.step_count() == len(inputs)


def test_a_call_without_gradient_leaves_the_statistics_alone():
    golden, make, inputs = golden_case("efl")
    loss = make(lazy=False)
    labels, _ = inputs[0]
    logits = torch.tensor(golden["logits"][0], requires_grad=True)
    with torch.no_grad():  # what evaluate() does
        value = loss(labels, logits)
    np.testing.assert_allclose(float(value), golden["loss"][0], rtol=1e-5)
    plain = loss(labels, torch.tensor(golden["logits"][0]))  # logits without a gradient
    np.testing.assert_allclose(float(plain), golden["loss"][0], rtol=1e-5)
    assert loss.statistics.step_count() == 0
    # The next differentiated step is still the golden first step.
    value, grad = _step(loss, labels, golden["logits"][0], None)
    assert_golden_step(golden, 0, value, grad, loss.gradient_statistics())


def test_call_returns_the_rows_and_leaves_the_statistics_alone():
    golden, make, inputs = golden_case("softmax_eql")
    loss = make(lazy=False)
    labels, weights = inputs[0]
    logits = torch.tensor(golden["logits"][0], requires_grad=True)
    rows = loss.call(labels, logits)
    rows.sum().backward()  # differentiated, no update
    assert tuple(rows.shape) == golden["logits"][0].shape[:1]
    np.testing.assert_allclose(float(rows.detach().mean() * weights[0]), golden["loss"][0],
                               rtol=1e-5)
    assert loss.statistics.step_count() == 0
