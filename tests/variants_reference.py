"""The paper's variants in float64 NumPy: formulas, a statistics simulation and the cases.

Shared by tests/test_variants.py (TensorFlow) and tests/backend_jax (JAX):
nothing here comes from `keras_eql.functional`, `keras_eql._fused` or
`keras_eql._rows`, so a bug in code they share cannot pass on both sides.
"""

import numpy as np

import keras_eql

ROWS, CLASSES, STEPS = 40, 6, 3
IGNORE = -1


# -- the formulas, float64 ---------------------------------------------------------


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _softplus(z):
    return np.logaddexp(0.0, z)


def _sigmoid_eql_weights(ratio, gamma=12.0, mu=0.8, alpha=4.0, reweight_negatives=True,
                         reweight_positives=True):
    """(q_j, r_j) of Eq. 8-9; a switched-off side weighs 1, q_j still uses f(G_j)."""
    mapped = np.clip(_sigmoid(gamma * (ratio - mu)), 0.0, 1.0)
    positive = 1.0 + alpha * (1.0 - mapped) if reweight_positives else np.ones_like(ratio)
    negative = mapped if reweight_negatives else np.ones_like(ratio)
    return positive, negative


def _focal(z, y, focusing, weight):
    """`-weight (1 - p_t)**focusing log p_t` and its derivative w.r.t. `z`."""
    x = np.where(y > 0, z, -z)
    p_t = _sigmoid(x)
    neg_log_p_t = _softplus(-x)
    loss = weight * (1.0 - p_t) ** focusing * neg_log_p_t
    d_x = weight * (1.0 - p_t) ** focusing * (-focusing * p_t * neg_log_p_t - (1.0 - p_t))
    return loss, np.where(y > 0, d_x, -d_x)


def sigmoid_eql(z, y, ratio, **options):
    """Element loss and dE/dz of Sigmoid-EQL: `w BCE(z, y)`, `w (p - y)`."""
    positive, negative = _sigmoid_eql_weights(ratio, **options)
    weight = y * positive + (1.0 - y) * negative
    return weight * (_softplus(z) - y * z), weight * (_sigmoid(z) - y)


def focal_sigmoid_eql(z, y, ratio, focal_alpha=0.25, focal_gamma=2.0, **options):
    """FL+EQL: Sigmoid-EQL's `w_ij` times `alpha_t` on the focal element loss."""
    positive, negative = _sigmoid_eql_weights(ratio, **options)
    alpha_t = np.where(y > 0, focal_alpha, 1.0 - focal_alpha)
    return _focal(z, y, focal_gamma, alpha_t * (y * positive + (1.0 - y) * negative))


def _efl_factors(ratio, gamma, scale, focusing_factor, weighting_factor):
    class_gamma = gamma + scale * (1.0 - ratio)
    focusing = class_gamma if focusing_factor else np.full_like(ratio, gamma)
    weighting = class_gamma / gamma if weighting_factor else np.ones_like(ratio)
    return focusing, weighting


def equalized_focal_loss(z, y, ratio, alpha=0.25, gamma=2.0, scale=8.0, focusing_factor=True,
                         weighting_factor=True):
    """EFL, Eq. 18-21, `alpha_t` as in the authors' code."""
    focusing, weighting = _efl_factors(ratio, gamma, scale, focusing_factor, weighting_factor)
    alpha_t = np.where(y > 0, alpha, 1.0 - alpha)
    return _focal(z, y, focusing, weighting * alpha_t)


def equalized_quality_focal_loss(z, y, ratio, gamma=2.0, scale=8.0, focusing_factor=True,
                                 weighting_factor=True):
    """EQFL, Eq. 22-23, with quality targets `y` in [0, 1] (positive where > 0)."""
    f, weighting = _efl_factors(ratio, gamma, scale, focusing_factor, weighting_factor)
    p = _sigmoid(z)
    bce = _softplus(z) - y * z
    distance = np.abs(p - y)
    positive_loss = distance ** f * bce
    positive_grad = ((p - y) * distance ** f
                     + f * distance ** (f - 1.0) * np.sign(p - y) * p * (1.0 - p) * bce)
    negative_loss = p ** f * _softplus(z)
    negative_grad = p ** f * (f * (1.0 - p) * _softplus(z) + p)
    positive = y > 0
    return (weighting * np.where(positive, positive_loss, negative_loss),
            weighting * np.where(positive, positive_grad, negative_grad))


class Simulation:
    """The loss, its gradient and the authors' statistics over steps, float64.

    `per_sample`: Sigmoid-EQL's collector (`sum_i s_i |dE_ij/dz_ij|`, no
    normaliser); else the hooks' (the gradient of the reduced loss).
    """

    def __init__(self, element, initial_ratio, clip, per_sample, reduction="sum_over_batch_size",
                 normalize_by_positives=False, **options):
        self.element, self.options = element, options
        self.initial_ratio, self.clip, self.per_sample = initial_ratio, clip, per_sample
        self.reduction, self.normalize_by_positives = reduction, normalize_by_positives
        self.positive = np.zeros(CLASSES)
        self.negative = np.zeros(CLASSES)

    def ratio(self):
        touched = self.positive + self.negative > 0
        ratio = np.where(touched, self.positive / (self.negative + 1e-10), self.initial_ratio)
        return np.clip(ratio, 0.0, 1.0) if self.clip else ratio

    def step(self, targets, logits, weights, counted):
        """(loss, gradient) of one step; folds the step into the statistics."""
        elements, local = self.element(logits, targets, self.ratio(), **self.options)
        scale = np.where(counted, weights, 0.0)
        if self.normalize_by_positives:
            scale = scale / max((counted & (targets > 0).any(1)).sum(), 1)
        if self.reduction == "sum_over_batch_size":
            scale = scale / counted.sum()
        loss = (scale * elements.sum(1)).sum()
        gradient = scale[:, None] * local
        collected = np.where(counted, weights, 0.0)[:, None] * local if self.per_sample else gradient
        positive = targets > 0
        self.positive += np.abs(np.where(positive, collected, 0.0)).sum(0)
        self.negative += np.abs(np.where(positive, 0.0, collected)).sum(0)
        return loss, gradient


# -- the cases ------------------------------------------------------------------------


def _batch(rng, quality):
    """Sparse labels (C background, -1 ignored) or quality targets, logits, weights."""
    labels = rng.integers(IGNORE, CLASSES + 1, ROWS)
    labels[:CLASSES] = np.arange(CLASSES)  # every class has a positive
    logits = rng.normal(0.0, 2.5, (ROWS, CLASSES))
    weights = rng.uniform(0.5, 2.0, ROWS)
    counted = labels != IGNORE
    one_hot = np.eye(CLASSES + 1)[np.where(counted, labels, CLASSES)][:, :CLASSES]
    if not quality:
        return labels, one_hot, logits, weights, counted
    # Dense IoU-quality targets; an "ignored" row is a zero-weight row.
    targets = one_hot * rng.uniform(0.1, 1.0, (ROWS, 1))
    weights = np.where(counted, weights, 0.0)
    return targets, targets, logits, weights, np.ones(ROWS, bool)


SIGMOID = dict(cls=keras_eql.SigmoidEQL, element=sigmoid_eql, initial_ratio=100.0, clip=False,
               per_sample=True)
FOCAL_SIGMOID = dict(cls=keras_eql.FocalSigmoidEQL, element=focal_sigmoid_eql,
                     initial_ratio=100.0, clip=False, per_sample=True)
EFL = dict(cls=keras_eql.EqualizedFocalLoss, element=equalized_focal_loss, initial_ratio=1.0,
           clip=True, per_sample=False)
EQFL = dict(cls=keras_eql.EqualizedQualityFocalLoss, element=equalized_quality_focal_loss,
            initial_ratio=1.0, clip=True, per_sample=False, quality=True)

# id -> (loss, options of both the class and the formula, options of the class only)
CASES = {
    "sigmoid_eql-positives_only": (SIGMOID, {"reweight_negatives": False}, {}),
    "sigmoid_eql-negatives_only": (SIGMOID, {"reweight_positives": False}, {}),
    "sigmoid_eql-objectness_only": (
        SIGMOID, {"reweight_negatives": False, "reweight_positives": False}, {}),
    "efl-focusing_only": (EFL, {"weighting_factor": False}, {}),
    "efl-weighting_only": (EFL, {"focusing_factor": False}, {}),
    "efl-neither": (EFL, {"focusing_factor": False, "weighting_factor": False}, {}),
    "eqfl-focusing_only": (EQFL, {"weighting_factor": False}, {}),
    "eqfl-weighting_only": (EQFL, {"focusing_factor": False}, {}),
    "fl_eql": (FOCAL_SIGMOID, {}, {}),
    "fl_eql-options": (FOCAL_SIGMOID, {"focal_alpha": 0.4, "focal_gamma": 1.5, "gamma": 8.0,
                                       "mu": 0.5, "alpha": 2.0}, {}),
    "fl_eql-positives_only": (FOCAL_SIGMOID, {"reweight_negatives": False}, {}),
    "fl_eql-negatives_only": (FOCAL_SIGMOID, {"reweight_positives": False}, {}),
    "fl_eql-normalized": (FOCAL_SIGMOID, {},
                          {"normalize_by_positives": True, "reduction": "sum"}),
}
