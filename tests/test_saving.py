"""Statistics are model state: config, .keras, weights, BackupAndRestore, Checkpoint."""

import inspect
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_eql
from conftest import REPO_ROOT
from helpers import LOSS_KINDS, NUM_CLASSES, long_tailed_data, make_loss, make_model

CLASSES = [keras_eql.SigmoidEQL, keras_eql.SoftmaxEQL, keras_eql.EqualizedFocalLoss,
           keras_eql.EqualizedQualityFocalLoss, keras_eql.FocalSigmoidEQL]


@pytest.mark.parametrize("cls", CLASSES)
def test_config_mirrors_constructor_and_round_trips(cls):
    loss = cls(num_classes=4, decay=0.99, update_statistics=False, reduction="sum", dtype="bfloat16")
    config = loss.get_config()
    assert set(config) == set(inspect.signature(cls.__init__).parameters) - {"self"}
    assert config["dtype"] == "bfloat16" and config["num_classes"] == 4
    clone = cls.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is cls and restored.get_config() == config
    json.dumps(config)


def test_callable_mapping_round_trips():
    @keras.saving.register_keras_serializable(package="keras_eql_tests")
    def halved(ratio):
        return 0.5 * ratio

    loss = keras_eql.SigmoidEQL(mapping=halved)
    restored = keras_eql.SigmoidEQL.from_config(loss.get_config())
    assert restored.mapping(2.0) == 1.0


def _trained(kind, epochs=2, **compile_kwargs):
    features, labels = long_tailed_data(kind)
    model = make_model()
    loss = make_loss(kind)
    model.compile(keras.optimizers.SGD(0.1), loss=loss, jit_compile=True, **compile_kwargs)
    model.fit(features, labels, batch_size=16, epochs=epochs, shuffle=False, verbose=0)
    return model, loss, features, labels


def _assert_same_statistics(loss, expected):
    stats = loss.gradient_statistics()
    for key in ("positive", "negative", "ratio"):
        np.testing.assert_array_equal(stats[key], expected[key], err_msg=key)


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_keras_file_restores_statistics_in_a_fresh_process(kind, tmp_path):
    model, loss, _, _ = _trained(kind)
    path = tmp_path / "model.keras"
    model.save(path)
    expected = loss.gradient_statistics()
    np.savez(tmp_path / "expected.npz", **expected)
    steps = float(loss.statistics.steps.numpy())
    script = f"""
import numpy as np, keras, keras_eql
model = keras.models.load_model({str(path)!r})
stats = model.loss.gradient_statistics()
expected = np.load({str(tmp_path / 'expected.npz')!r})
for key in ("positive", "negative", "ratio"):
    np.testing.assert_array_equal(stats[key], expected[key])
assert type(model.loss).__name__ == {type(loss).__name__!r}
assert float(model.loss.statistics.steps.numpy()) == {steps}
print("restored", float(model.loss.statistics.steps.numpy()))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"restored {steps}" in result.stdout


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_save_weights_restores_into_a_lazy_loss(kind, tmp_path):
    model, loss, _, _ = _trained(kind)
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    fresh_model = make_model(seed=7)
    fresh_loss = make_loss(kind)  # num_classes unknown: built from the file
    fresh_model.compile(keras.optimizers.SGD(0.1), loss=fresh_loss, jit_compile=True)
    fresh_model.load_weights(path)
    _assert_same_statistics(fresh_loss, loss.gradient_statistics())


class _Preempt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("preempted")


@pytest.mark.parametrize("kind", ["sigmoid_eql", "efl"])
def test_backup_and_restore_resumes_statistics_exactly(kind, tmp_path):
    features, labels = long_tailed_data(kind)
    reference, reference_loss, _, _ = _trained(kind, epochs=4)

    def fresh():
        model = make_model()
        loss = make_loss(kind)
        model.compile(keras.optimizers.SGD(0.1), loss=loss, jit_compile=True)
        return model, loss

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    model, _ = fresh()
    with pytest.raises(RuntimeError, match="preempted"):
        model.fit(features, labels, batch_size=16, epochs=4, shuffle=False, verbose=0,
                  callbacks=[backup, _Preempt()])
    model, loss = fresh()
    model.fit(features, labels, batch_size=16, epochs=4, shuffle=False, verbose=0,
              callbacks=[backup])
    stats, expected = loss.gradient_statistics(), reference_loss.gradient_statistics()
    for key in ("positive", "negative", "ratio"):
        np.testing.assert_allclose(stats[key], expected[key], rtol=1e-6, err_msg=key)
    assert float(loss.statistics.steps.numpy()) == 16.0
    for weight, expected_weight in zip(model.weights, reference.weights):
        np.testing.assert_allclose(weight.numpy(), expected_weight.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("lazy", [False, True])
def test_tf_train_checkpoint_restores_statistics(lazy, tmp_path):
    model, loss, _, _ = _trained("efl")
    prefix = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    fresh_model = make_model(seed=3)
    fresh_loss = keras_eql.EqualizedFocalLoss(num_classes=None if lazy else NUM_CLASSES)
    fresh_model.compile(keras.optimizers.SGD(0.1), loss=fresh_loss)
    status = tf.train.Checkpoint(model=fresh_model).restore(prefix)
    if lazy:  # statistics restored when the first call creates them
        fresh_model.evaluate(*long_tailed_data("efl"), verbose=0)
    status.assert_existing_objects_matched()
    _assert_same_statistics(fresh_loss, loss.gradient_statistics())


def test_reset_statistics_returns_to_step_zero():
    _, loss, _, _ = _trained("sigmoid_eql", epochs=1)
    assert loss.gradient_statistics()["positive"].sum() > 0
    loss.reset_statistics()
    stats = loss.gradient_statistics()
    assert not stats["positive"].any() and not stats["negative"].any()
    np.testing.assert_array_equal(stats["ratio"], np.full(NUM_CLASSES, 100.0))
    assert float(loss.statistics.steps.numpy()) == 0.0
