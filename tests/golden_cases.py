"""The golden files as loss cases, shared by the TensorFlow, JAX and PyTorch golden tests.

No TensorFlow here: `tests/backend_jax` and `tests/backend_torch` import it in venvs without it.
"""

import numpy as np

import keras_eql
from conftest import load_golden

# `sigmoid_eql_varying_rows`, `softmax_eql_negative` and `_pos_and_neg` are
# this repository's (tests/golden/make_golden_extra.py), the rest the shared set.
GOLDEN_NAMES = ["sigmoid_eql", "sigmoid_eql_varying_rows", "efl", "eqfl", "softmax_eql",
                "softmax_eql_tau05_lw2", "softmax_eql_negative", "softmax_eql_pos_and_neg"]


def efl_labels(labels, num_classes):
    """The reference's EFL labels (0 background, k > 0 class k - 1) as ours (C background)."""
    return np.where(labels == 0, num_classes, np.where(labels > 0, labels - 1, -1))


def golden_case(name):
    """`(golden, make_loss(lazy), per-step (labels, sample weights))` of a golden file.

    `make_loss(lazy=True)` leaves `num_classes` to the first call.
    """
    golden = load_golden(name)
    steps, rows, width = golden["logits"].shape
    if name.startswith("sigmoid_eql"):
        # Varying rows: label -1 (the default ignore_class) where the
        # reference dropped the row.
        def make(lazy):
            return keras_eql.SigmoidEQL(num_classes=None if lazy else width - 1, objectness=True)

        return golden, make, [(golden["labels"][t], None) for t in range(steps)]
    if name in ("efl", "eqfl"):
        labels = efl_labels(golden["labels"], width)
        loss_class = keras_eql.EqualizedFocalLoss if name == "efl" else keras_eql.EqualizedQualityFocalLoss

        def make(lazy):
            return loss_class(num_classes=None if lazy else width, normalize_by_positives=True, reduction="sum")

        if name == "efl":
            return golden, make, [(labels[t], None) for t in range(steps)]
        inputs = []
        for t in range(steps):
            targets = np.zeros((rows, width), np.float32)
            positive = (labels[t] >= 0) & (labels[t] < width)
            targets[np.nonzero(positive)[0], labels[t][positive]] = golden["scores"][t][positive]
            inputs.append((targets, (golden["labels"][t] != -1).astype(np.float32)))
        return golden, make, inputs
    tau = 0.5 if name.endswith("tau05_lw2") else 1.0
    loss_weight = 2.0 if name.endswith("lw2") else 1.0
    indicator = {"softmax_eql_negative": "negative",
                 "softmax_eql_pos_and_neg": "positive_and_negative"}.get(name, "positive")

    def make(lazy):
        return keras_eql.SoftmaxEQL(num_classes=None if lazy else width, tau=tau, indicator=indicator)

    return golden, make, [(golden["labels"][t], np.full(rows, loss_weight, np.float32)) for t in range(steps)]


def assert_golden_step(golden, t, value, grad, statistics):
    """Step `t` of a golden file: loss rtol 1e-5, gradient atol 1e-5 * max|g|, statistics rtol 1e-5.

    Args:
        value, grad: the loss and its gradient w.r.t. the logits (NumPy-convertible).
        statistics: `loss.gradient_statistics()` after the step.
    """
    np.testing.assert_allclose(float(value), golden["loss"][t], rtol=1e-5,
                               err_msg=f"loss, step {t}")
    grad_scale = np.abs(golden["grad"][t]).max()
    np.testing.assert_allclose(np.asarray(grad), golden["grad"][t], rtol=0,
                               atol=1e-5 * grad_scale, err_msg=f"grad, step {t}")
    for key, golden_key in (("positive", "pos_grad"), ("negative", "neg_grad"),
                            ("ratio", "pos_neg")):
        np.testing.assert_allclose(statistics[key], golden[golden_key][t], rtol=1e-5,
                                   err_msg=f"{key}, step {t}")
