"""KerasHub tasks (custom `compile()`): `.keras` round trips keep the EQL loss and statistics.

The tasks are built from config with tiny backbones and no downloaded
weights, trained for two steps on random images, saved, and loaded back.
"""

import doctest
import warnings

import keras
import numpy as np
import pytest

import keras_eql

keras_hub = pytest.importorskip("keras_hub", reason="keras-hub is not installed (pip install keras-hub)")

NUM_CLASSES = 4


def tiny_resnet(image_size, channels):
    """The smallest ResNet KerasHub accepts: two stages of one basic block."""
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 64],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        image_shape=(image_size, image_size, channels))


def trained_classifier():
    keras.utils.set_random_seed(0)
    classifier = keras_hub.models.ResNetImageClassifier(backbone=tiny_resnet(16, 1), num_classes=NUM_CLASSES)
    loss = keras_eql.SoftmaxEQL()
    classifier.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 16, 16, 1)).astype("float32")
    y = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 0, 1], "int32")
    classifier.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    return classifier, loss, (x, y)


def trained_detector():
    keras.utils.set_random_seed(0)
    size = 32
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=tiny_resnet(size, 3), min_level=2, max_level=3, use_p5=False,
        image_shape=(size, size, 3))
    detector = keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone, num_classes=NUM_CLASSES, bounding_box_format="xyxy",
        anchor_generator=keras_hub.layers.AnchorGenerator(
            "xyxy", min_level=2, max_level=3, num_scales=1, aspect_ratios=[1.0], anchor_size=4),
        pre_logits_num_conv_layers=1)
    loss = keras_eql.EqualizedFocalLoss(num_classes=NUM_CLASSES, reduction="sum")
    detector.compile(optimizer=keras.optimizers.Adam(1e-3), classification_loss=loss,
                     box_loss=keras.losses.Huber(reduction="sum"))
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(8, size, size, 3)).astype("float32")
    boxes = np.tile(np.array([[[4, 4, 20, 20], [-1, -1, -1, -1]]], "float32"), (8, 1, 1))
    labels = np.tile(np.array([[0, -1]], "float32"), (8, 1))
    labels[::3, 0] = 3
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*shuffle=True.*")  # keras-hub's, not ours
        detector.fit(images, {"boxes": boxes, "labels": labels}, batch_size=4, epochs=1, shuffle=False,
                     verbose=0)
    return detector, loss


def assert_restored(model, loss, eql_loss_of, tmp_path):
    """`keras_eql.load_model` gives back the loss class, its statistics and the optimizer state."""
    path = tmp_path / "task.keras"
    model.save(path)
    expected = loss.gradient_statistics()
    steps = float(loss.statistics.steps.numpy())
    assert steps == 2.0

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restored = keras_eql.load_model(path)
    assert not [w for w in caught if "compile()" in str(w.message)], [str(w.message) for w in caught]
    restored_loss = eql_loss_of(restored)
    assert type(restored_loss) is type(loss)
    assert restored_loss.get_config() == loss.get_config()
    for key in ("positive", "negative", "ratio"):
        np.testing.assert_array_equal(restored_loss.gradient_statistics()[key], expected[key], err_msg=key)
    assert float(restored_loss.statistics.steps.numpy()) == steps
    assert int(restored.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy())
    return restored, restored_loss


def test_plain_keras_load_drops_the_loss_and_the_logger_then_names_the_fix(tmp_path):
    """What Keras does without keras_eql.load_model, and where keras_eql notices it.

    The task comes back with its default loss and Keras's generic warning; no
    keras_eql code runs during the load. A `GradientStatisticsLogger` in the
    resumed `fit` is the first keras_eql code that sees the model: it raises
    before any step, naming `keras_eql.load_model`.
    """
    classifier, _, (x, y) = trained_classifier()
    path = tmp_path / "classifier.keras"
    classifier.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reloaded = keras.models.load_model(path)
    assert type(reloaded.loss) is keras.losses.SparseCategoricalCrossentropy
    assert any("compile()` method is custom" in str(w.message) for w in caught)
    with pytest.raises(ValueError, match=r"ResNetImageClassifier overrides compile\(\).*keras_eql.load_model"):
        reloaded.fit(x[:8], y[:8], epochs=1, verbose=0, callbacks=[keras_eql.GradientStatisticsLogger()])
    assert int(reloaded.optimizer.iterations.numpy()) == 0  # stopped before any step


def test_resnet_image_classifier_round_trip_keeps_softmax_eql(tmp_path):
    classifier, loss, (x, y) = trained_classifier()
    restored, restored_loss = assert_restored(classifier, loss, lambda model: model.loss, tmp_path)
    # Training resumes with the restored loss: one more step folds into the same statistics.
    restored.fit(x[:8], y[:8], batch_size=8, epochs=1, verbose=0)
    assert float(restored_loss.statistics.steps.numpy()) == 3.0


def test_retinanet_round_trip_keeps_equalized_focal_loss(tmp_path):
    detector, loss = trained_detector()
    assert detector.loss["cls_logits"] is loss
    restored, _ = assert_restored(detector, loss, lambda model: model.loss["cls_logits"], tmp_path)
    assert type(restored.loss["bbox_regression"]) is keras.losses.Huber
    assert restored.get_compile_config()["loss"]["cls_logits"]["class_name"] == "EqualizedFocalLoss"


def test_load_model_of_a_plain_model_is_keras_load_model(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    loss = keras_eql.EqualizedFocalLoss()
    model.compile("sgd", loss=loss)
    model.fit(np.ones((8, 4)), np.zeros(8), verbose=0)
    model.save(tmp_path / "plain.keras")
    restored = keras_eql.load_model(tmp_path / "plain.keras")
    assert not keras_eql._saving.overrides_compile(restored)
    assert float(restored.loss.statistics.steps.numpy()) == 1.0


def test_docstring_examples_run():
    result = doctest.testmod(keras_eql._saving, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result


@keras.saving.register_keras_serializable(package="keras_eql_tests")
class CustomCompileModel(keras.Sequential):
    """Any model whose class overrides compile(), as KerasHub tasks do."""

    def compile(self, optimizer="sgd", **kwargs):
        super().compile(optimizer=optimizer, **kwargs)


def test_any_custom_compile_model_round_trips_through_a_keras_file_only(tmp_path):
    model = CustomCompileModel([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(loss=keras_eql.EqualizedFocalLoss())
    model.fit(np.ones((8, 4)), np.zeros(8), verbose=0)
    model.save(tmp_path / "model.keras")
    restored = keras_eql.load_model(tmp_path / "model.keras")
    assert float(restored.loss.statistics.steps.numpy()) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras: "HDF5 ... legacy"
        model.save(tmp_path / "model.h5")
    with pytest.raises(ValueError, match=r"CustomCompileModel overrides compile\(\).*only be restored from a "
                                         r"\.keras file.*model\.h5"):
        keras_eql.load_model(tmp_path / "model.h5", custom_objects={"CustomCompileModel": CustomCompileModel})
