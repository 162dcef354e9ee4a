"""The paper's variants (issue 13) against their formulas, in NumPy (tests/variants_reference.py).

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
from variants_reference import CASES, CLASSES, IGNORE, STEPS, Simulation, _batch

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
