"""The paper's variants under PyTorch against their NumPy formulas (tests/variants_reference.py).

The cases of tests/test_variants.py: Sigmoid-EQL's and FL+EQL's switches,
EFL's and EQFL's factors, FL+EQL's options and normaliser, three steps with
ignored rows, background rows and sample weights, each a differentiated
call and `backward()`. Golden tolerances: loss rtol 1e-5, gradient atol
1e-5 * max|g|, statistics rtol 1e-5.
"""

import numpy as np
import pytest
import torch

from variants_reference import CASES, CLASSES, IGNORE, STEPS, Simulation, _batch


@pytest.mark.parametrize("case", sorted(CASES))
def test_variant_matches_its_formula_under_torch(case):
    spec, options, class_options = CASES[case]
    loss = spec["cls"](num_classes=CLASSES, ignore_class=IGNORE, **options, **class_options)
    simulation = Simulation(spec["element"], spec["initial_ratio"], spec["clip"],
                            spec["per_sample"], **options, **class_options)
    rng = np.random.default_rng(11)
    for t in range(STEPS):
        inputs, targets, logits, weights, counted = _batch(rng, spec.get("quality", False))
        inputs = inputs.astype(np.float32 if inputs.dtype.kind == "f" else np.int32)
        z = torch.tensor(logits.astype(np.float32), requires_grad=True)
        value = loss(inputs, z, torch.tensor(weights.astype(np.float32)))
        value.backward()
        expected_value, expected_gradient = simulation.step(
            targets, logits.astype(np.float32).astype(np.float64), weights, counted)
        message = f"{case} step {t}"
        np.testing.assert_allclose(float(value.detach()), expected_value, rtol=1e-5, err_msg=message)
        np.testing.assert_allclose(z.grad.numpy(), expected_gradient, rtol=0,
                                   atol=1e-5 * np.abs(expected_gradient).max(), err_msg=message)
        statistics = loss.gradient_statistics()
        expected = {"positive": simulation.positive, "negative": simulation.negative,
                    "ratio": simulation.ratio()}
        for key in expected:
            np.testing.assert_allclose(statistics[key], expected[key], rtol=1e-5,
                                       err_msg=f"{message}: {key}")
