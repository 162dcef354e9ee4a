"""The authors' Softmax-EQL recipe (`--recipe authors`): cosine classifier, coupled weight decay."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_eql
from keras_eql import cli


def test_cosine_classifier_is_the_scaled_cosine_similarity():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(5, 7)).astype(np.float32)
    head = keras_eql.CosineClassifier(4, temperature=30.0)
    logits = keras.ops.convert_to_numpy(head(features))
    kernel = head.kernel.numpy().astype(np.float64)
    unit_features = features / np.linalg.norm(features, axis=1, keepdims=True)
    unit_kernel = kernel / np.linalg.norm(kernel, axis=0, keepdims=True)
    np.testing.assert_allclose(logits, 30.0 * unit_features @ unit_kernel, rtol=1e-5, atol=1e-5)
    assert np.abs(logits).max() <= 30.0 + 1e-4


def test_cosine_classifier_zero_features_give_finite_logits_and_gradients():
    head = keras_eql.CosineClassifier(3, temperature=30.0)
    features = tf.constant(np.vstack([np.zeros(4), np.ones(4)]).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(features)
        logits = head(features)
        total = tf.reduce_sum(logits * tf.constant([[1.0, 2.0, 3.0]]))
    gradients = tape.gradient(total, [features, head.kernel])
    np.testing.assert_array_equal(logits.numpy()[0], 0.0)
    assert all(np.isfinite(g.numpy()).all() for g in gradients)


def test_cosine_classifier_config_round_trips_and_rejects_bad_values():
    head = keras_eql.CosineClassifier(3, temperature=16.0, kernel_regularizer=keras.regularizers.L2(0.1))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(head))
    assert type(restored) is keras_eql.CosineClassifier
    assert restored.get_config() == head.get_config()
    with pytest.raises(ValueError, match=r"CosineClassifier: `temperature` must be > 0, got 0"):
        keras_eql.CosineClassifier(3, temperature=0)
    with pytest.raises(ValueError, match=r"CosineClassifier: `units` must be a positive integer, got 2.5"):
        keras_eql.CosineClassifier(2.5)


def test_authors_model_has_the_cosine_head_and_torch_style_weight_decay():
    """The L2 penalty is `wd / 2 * ||w||^2` over every weight: its gradient is `wd * w`."""
    model = cli.small_cnn(width=4, cosine_temperature=30.0, weight_decay=5e-4)
    assert isinstance(model.layers[-1], keras_eql.CosineClassifier)
    assert model.layers[-1].temperature == 30.0
    penalty = sum(float(loss.numpy()) for loss in model.losses)
    expected = 5e-4 / 2 * sum(float(np.sum(np.square(w.numpy()))) for w in model.trainable_weights)
    np.testing.assert_allclose(penalty, expected, rtol=1e-5)
    assert not cli.small_cnn(width=4).losses


def test_recipe_flag_and_its_learning_rate():
    args = cli.build_parser().parse_args(["demo", "--recipe", "authors"])
    assert args.recipe == "authors" and args.learning_rate is None
    assert cli.build_parser().parse_args(["demo"]).recipe == "default"
    assert cli.RECIPES["default"]["learning_rate"] == cli.DEFAULTS["learning_rate"]
    with pytest.raises(ValueError, match="unknown recipe 'sgd'"):
        cli.train_and_evaluate("cross_entropy", (None, None, None, None), [1, 1], epochs=1,
                               recipe="sgd")


def test_authors_recipe_trains(capsys):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (128, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 3, 128)
    metrics, loss = cli.train_and_evaluate(
        "softmax_eql", (images, labels, images[:32], labels[:32]), [60, 40, 28], epochs=1,
        batch_size=32, width=4, verbose=0, recipe="authors")
    assert 0.0 <= metrics["overall"] <= 1.0
    assert float(loss.statistics.steps.numpy()) == 4.0
