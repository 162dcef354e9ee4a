"""Statistics formats: ratio arithmetic, and old Sigmoid-EQL sums never mixed with new ones.

Sigmoid-EQL's sums carried each step's 1/N until commit e72f151 (format 1);
they are now per-sample sums (format 2). The old sums cannot be rescaled
(the N_t of each step is unknown), so every loading path resets them to the
initial state instead of mixing the two scales. `tests/fixtures/` holds files
written by e72f151 (`make_v1_statistics.py`).
"""

import json
import shutil
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_eql
from conftest import REPO_ROOT
from keras_eql._statistics import STATISTICS_FORMAT, GradientStatistics

FIXTURES = REPO_ROOT / "tests" / "fixtures"
V1 = json.loads((FIXTURES / "v1_statistics.json").read_text())


# -- the ratio -------------------------------------------------------------------------
@pytest.mark.parametrize("clip", [False, True])
def test_ratio_of_small_sums_uses_the_authors_epsilon(clip):
    initial = 1.0 if clip else 100.0
    statistics = GradientStatistics(4, initial_ratio=initial, clip_ratio=clip, name="t")
    statistics.assign(positive=[1e-6, 0.0, 3.0, 0.0], negative=[1e-6, 1e-6, 0.0, 0.0], steps=1)
    positive = np.float32([1e-6, 0.0, 3.0])
    negative = np.float32([1e-6, 1e-6, 0.0])
    expected = list(positive / (negative + np.float32(1e-10))) + [initial]  # class 3 untouched
    if clip:
        expected = list(np.clip(expected[:3], 0.0, 1.0)) + [initial]
    np.testing.assert_allclose(statistics.ratio().numpy(), expected, rtol=1e-6)
    assert statistics.ratio().numpy()[0] > 0.999  # 1e-7 (Keras's epsilon) would give 0.909


# -- old Sigmoid-EQL files -------------------------------------------------------------
def _model():
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(5)])


def _assert_initial(loss):
    stats = loss.gradient_statistics()
    assert not stats["positive"].any() and not stats["negative"].any()
    np.testing.assert_array_equal(stats["ratio"], np.full(5, 100.0))


def _one_step_statistics(model, loss):
    """Statistics after one step from a fresh loss on the same weights and batch."""
    rng = np.random.default_rng(3)
    features, labels = rng.normal(size=(16, 6)).astype("float32"), rng.integers(0, 6, 16)
    reference_model = _model()
    reference_model.set_weights(model.get_weights())
    reference = keras_eql.SigmoidEQL(num_classes=5)
    reference_model.compile(keras.optimizers.SGD(0.1), loss=reference)
    reference_model.fit(features, labels, batch_size=16, verbose=0, shuffle=False)
    model.fit(features, labels, batch_size=16, verbose=0, shuffle=False)
    return loss.gradient_statistics(), reference.gradient_statistics()


def _assert_only_new_steps(model, loss):
    stats, expected = _one_step_statistics(model, loss)
    for key in ("positive", "negative", "ratio"):
        np.testing.assert_allclose(stats[key], expected[key], rtol=1e-6, err_msg=key)


def test_old_keras_file_resets_sigmoid_eql_statistics_with_a_warning():
    with pytest.warns(UserWarning, match=r"SigmoidEQL.*format 1.*reset"):
        model = keras.models.load_model(FIXTURES / "v1_sigmoid_eql.keras")
    _assert_initial(model.loss)
    assert model.loss.statistics.step_count() == 0.0
    assert np.abs(model.get_weights()[0]).sum() > 0  # weights loaded as usual
    _assert_only_new_steps(model, model.loss)


def test_old_weights_file_resets_sigmoid_eql_statistics_with_a_warning():
    model, loss = _model(), keras_eql.SigmoidEQL()
    model.compile(keras.optimizers.SGD(0.1), loss=loss)
    with pytest.warns(UserWarning, match="format 1"):
        model.load_weights(FIXTURES / "v1_sigmoid_eql.weights.h5")
    _assert_initial(loss)
    _assert_only_new_steps(model, loss)


def test_old_backup_resumes_weights_but_resets_sigmoid_eql_statistics(tmp_path):
    backup = tmp_path / "backup"
    shutil.copytree(FIXTURES / "v1_backup", backup)
    model, loss = _model(), keras_eql.SigmoidEQL()
    model.compile(keras.optimizers.SGD(0.1), loss=loss)
    rng = np.random.default_rng(3)
    features, labels = rng.normal(size=(16, 6)).astype("float32"), rng.integers(0, 6, 16)
    with pytest.warns(UserWarning, match="format 1"):
        # The backup says epoch 1 of 2 is done: one epoch (one step) is left.
        model.fit(features, labels, batch_size=16, epochs=2, verbose=0, shuffle=False,
                  callbacks=[keras.callbacks.BackupAndRestore(str(backup))])
    assert loss.statistics.step_count() == 1.0


def test_old_tf_checkpoint_reads_as_the_initial_state_and_is_replaced():
    model, loss = _model(), keras_eql.SigmoidEQL(num_classes=5)
    model.compile(keras.optimizers.SGD(0.1), loss=loss)
    tf.train.Checkpoint(loss=loss).read(str(FIXTURES / "v1_checkpoint" / "ckpt")).expect_partial()
    # The raw variables hold the old sums; no reader sees them.
    np.testing.assert_allclose(loss.statistics.positive.numpy(), V1["positive"], rtol=1e-6)
    assert loss.statistics.is_stale()
    _assert_initial(loss)
    _assert_only_new_steps(model, loss)
    assert not loss.statistics.is_stale()
    assert float(loss.statistics.format.numpy()) == STATISTICS_FORMAT


def test_new_tf_checkpoint_keeps_sigmoid_eql_statistics(tmp_path):
    model, loss = _model(), keras_eql.SigmoidEQL(num_classes=5)
    model.compile(keras.optimizers.SGD(0.1), loss=loss)
    _one_step_statistics(model, loss)
    path = tf.train.Checkpoint(loss=loss).write(str(tmp_path / "ckpt"))
    restored = keras_eql.SigmoidEQL(num_classes=5)
    tf.train.Checkpoint(loss=restored).read(path).assert_consumed()
    assert not restored.statistics.is_stale()
    for key, value in loss.gradient_statistics().items():
        np.testing.assert_array_equal(restored.gradient_statistics()[key], value)


@pytest.mark.parametrize("cls", [keras_eql.EqualizedFocalLoss, keras_eql.SoftmaxEQL,
                                 keras_eql.EqualizedQualityFocalLoss])
def test_other_losses_continue_from_format_1_sums(cls):
    """Their sums always meant the gradient of the output: nothing to reset."""
    store = {"positive_gradients": np.float32([1.0, 2.0]),
             "negative_gradients": np.float32([4.0, 1.0]), "steps": np.float32(3.0)}
    loss = cls()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss.load_own_variables(store)
    np.testing.assert_array_equal(loss.gradient_statistics()["positive"], [1.0, 2.0])
    assert loss.statistics.step_count() == 3.0
    sigmoid = keras_eql.SigmoidEQL()
    with pytest.warns(UserWarning, match="format 1"):
        sigmoid.load_own_variables(store)
    assert sigmoid.statistics.step_count() == 0.0
