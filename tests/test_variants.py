"""The paper's variants (issue 13) against their formulas, written here in NumPy.

Sigmoid-EQL's component switches (Table 2), EFL's and EQFL's two factors
(Table 9) and FL+EQL (Table 11, `FocalSigmoidEQL`). Each case trains the
loss class for three steps (ignored rows, background rows, sample weights)
and compares, at every step, its value, its gradient w.r.t. the logits and
its statistics with a float64 NumPy simulation of the paper's formulas and
the authors' statistics. Nothing here comes from `keras_eql.functional` or
`keras_eql._fused`, so a bug in code both share cannot pass on both sides.
Tolerances are the golden ones: loss rtol 1e-5, gradient atol 1e-5 * max|g|,
statistics rtol 1e-5.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

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
JIT_CASES = {"sigmoid_eql-positives_only", "efl-weighting_only", "eqfl-focusing_only",
             "fl_eql-normalized"}


def _run_case(case, jit):
    spec, options, class_options = CASES[case]
    loss = spec["cls"](num_classes=CLASSES, ignore_class=IGNORE, **options, **class_options)
    simulation = Simulation(spec["element"], spec["initial_ratio"], spec["clip"],
                            spec["per_sample"], **options, **class_options)

    def step(targets, logits, weights):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = loss(targets, logits, sample_weight=weights)
        return value, tape.gradient(value, logits)

    if jit:
        step = tf.function(step, jit_compile=True)
    rng = np.random.default_rng(11)
    results = []
    for _ in range(STEPS):
        inputs, targets, logits, weights, counted = _batch(rng, spec.get("quality", False))
        dtype = tf.float32 if inputs.dtype.kind == "f" else tf.int32
        value, gradient = step(tf.constant(inputs, dtype), tf.constant(logits, tf.float32),
                               tf.constant(weights, tf.float32))
        expected_value, expected_gradient = simulation.step(
            targets, logits.astype(np.float32).astype(np.float64), weights, counted)
        statistics = loss.gradient_statistics()
        results.append(dict(
            value=float(value), gradient=gradient.numpy(), statistics=statistics,
            expected_value=expected_value, expected_gradient=expected_gradient,
            expected_statistics={"positive": simulation.positive.copy(),
                                 "negative": simulation.negative.copy(),
                                 "ratio": simulation.ratio()}))
    return results


@pytest.mark.parametrize("case", sorted(CASES))
def test_variant_matches_its_formula(case):
    jit = case in JIT_CASES
    for t, r in enumerate(_run_case(case, jit)):
        message = f"{case} step {t}"
        np.testing.assert_allclose(r["value"], r["expected_value"], rtol=1e-5, err_msg=message)
        scale = np.abs(r["expected_gradient"]).max()
        np.testing.assert_allclose(r["gradient"], r["expected_gradient"], rtol=0,
                                   atol=1e-5 * scale, err_msg=message)
        for key in ("positive", "negative", "ratio"):
            np.testing.assert_allclose(r["statistics"][key], r["expected_statistics"][key],
                                       rtol=1e-5, err_msg=f"{message}: {key}")


@pytest.mark.parametrize("case", ["sigmoid_eql-positives_only", "sigmoid_eql-negatives_only",
                                  "efl-focusing_only", "efl-weighting_only",
                                  "fl_eql-positives_only"])
def test_the_formulas_tell_each_switch_apart(case):
    """The cases have power: on this data each switch changes the last step's gradient."""
    spec, options, class_options = CASES[case]
    rng = np.random.default_rng(11)
    batches = [_batch(rng, spec.get("quality", False)) for _ in range(STEPS)]
    gradients = []
    for switched in (options, {}):
        simulation = Simulation(spec["element"], spec["initial_ratio"], spec["clip"],
                                spec["per_sample"], **switched, **class_options)
        for _, targets, logits, weights, counted in batches:
            _, gradient = simulation.step(targets, logits, weights, counted)
        gradients.append(gradient)
    difference = np.abs(gradients[0] - gradients[1]).max()
    assert difference > 1e-2 * np.abs(gradients[1]).max(), case


def _values(loss, steps=STEPS):
    """Value, gradient and statistics of each of `steps` steps (sparse labels, eager)."""
    rng = np.random.default_rng(5)
    out = []
    for _ in range(steps):
        labels, _, logits, weights, _ = _batch(rng, False)
        logits = tf.constant(logits, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = loss(tf.constant(labels), logits, sample_weight=tf.constant(weights, tf.float32))
        out.append((float(value), tape.gradient(value, logits).numpy(),
                    loss.gradient_statistics()))
    return out


@pytest.mark.parametrize("cls", [keras_eql.SigmoidEQL, keras_eql.FocalSigmoidEQL])
def test_alpha_zero_is_reweight_positives_off(cls):
    by_alpha = _values(cls(num_classes=CLASSES, alpha=0.0))
    by_switch = _values(cls(num_classes=CLASSES, reweight_positives=False))
    for (value, gradient, statistics), (value2, gradient2, statistics2) in zip(by_alpha, by_switch):
        np.testing.assert_allclose(value, value2, rtol=1e-6)
        np.testing.assert_allclose(gradient, gradient2, rtol=1e-6, atol=1e-9)
        for key in statistics:
            np.testing.assert_allclose(statistics[key], statistics2[key], rtol=1e-6)


def test_efl_without_both_factors_is_scale_zero():
    """Table 9's baseline row: both factors off is focal loss, as `scale=0` is."""
    neither = _values(keras_eql.EqualizedFocalLoss(
        num_classes=CLASSES, focusing_factor=False, weighting_factor=False))
    focal = _values(keras_eql.EqualizedFocalLoss(num_classes=CLASSES, scale=0.0))
    for (value, gradient, statistics), (value2, gradient2, statistics2) in zip(neither, focal):
        np.testing.assert_allclose(value, value2, rtol=1e-6)
        np.testing.assert_allclose(gradient, gradient2, rtol=1e-6, atol=1e-9)
        for key in statistics:
            np.testing.assert_allclose(statistics[key], statistics2[key], rtol=1e-6)


OFF_CONFIGS = {
    keras_eql.SigmoidEQL: {"reweight_negatives": False, "reweight_positives": False},
    keras_eql.EqualizedFocalLoss: {"focusing_factor": False, "weighting_factor": False},
    keras_eql.EqualizedQualityFocalLoss: {"focusing_factor": False, "weighting_factor": True},
    keras_eql.FocalSigmoidEQL: {"focal_alpha": None, "focal_gamma": 0.5, "mapping": "sqrt",
                                "reweight_negatives": False, "normalize_by_positives": True,
                                "reduction": "sum"},
}


@pytest.mark.parametrize("cls", list(OFF_CONFIGS), ids=lambda c: c.__name__)
def test_switches_round_trip_the_config(cls):
    loss = cls(num_classes=3, **OFF_CONFIGS[cls])
    config = loss.get_config()
    for key, value in OFF_CONFIGS[cls].items():
        assert config[key] == value, key
    assert cls.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is cls and restored.get_config() == config


def test_fl_eql_by_name():
    loss = keras_eql.get("fl_eql", focal_gamma=1.0, reweight_negatives=False)
    assert type(loss) is keras_eql.FocalSigmoidEQL
    assert loss.focal_gamma == 1.0 and loss.reweight_negatives is False
    assert type(keras_eql.get("FocalSigmoidEQL")) is keras_eql.FocalSigmoidEQL
    assert "fl_eql" in keras_eql.available_losses()


@pytest.mark.parametrize("cls,arguments,fragment", [
    (keras_eql.SigmoidEQL, {"reweight_negatives": "no"}, "`reweight_negatives` must be True or False, got 'no'"),
    (keras_eql.SigmoidEQL, {"reweight_positives": None}, "`reweight_positives` must be True or False, got None"),
    (keras_eql.EqualizedFocalLoss, {"focusing_factor": 2}, "`focusing_factor` must be True or False, got 2"),
    (keras_eql.EqualizedQualityFocalLoss, {"weighting_factor": "yes"}, "`weighting_factor` must be True or False, got 'yes'"),
    (keras_eql.FocalSigmoidEQL, {"focal_gamma": -1.0}, "`focal_gamma` must be in [0.0, inf], got -1.0"),
    (keras_eql.FocalSigmoidEQL, {"focal_alpha": 1.5}, "`focal_alpha` must be in [0.0, 1.0], got 1.5"),
    (keras_eql.FocalSigmoidEQL, {"alpha": -2.0}, "`alpha` must be in [0.0, inf], got -2.0"),
    (keras_eql.FocalSigmoidEQL, {"mapping": "cubic"}, "unknown mapping='cubic'"),
    (keras_eql.FocalSigmoidEQL, {"normalize_by_positives": True}, "use reduction='sum', got 'sum_over_batch_size'"),
    (keras_eql.FocalSigmoidEQL, {"reweight_negatives": 0.5}, "`reweight_negatives` must be True or False, got 0.5"),
])
def test_bad_switch_or_hyperparameter_names_loss_and_value(cls, arguments, fragment):
    with pytest.raises(ValueError) as error:
        cls(**arguments)
    message = str(error.value)
    assert message.startswith(cls.__name__ + ":") and fragment in message, message
