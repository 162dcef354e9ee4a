"""`keras_eql.validate_labels` under KERAS_BACKEND=jax and =torch: arrays, tensors and PyDatasets."""

import keras
import numpy as np
import pytest

import keras_eql


class _Batches(keras.utils.PyDataset):
    def __init__(self, labels, batch):
        super().__init__()
        self.labels, self.batch = labels, batch

    def __len__(self):
        return len(self.labels) // self.batch

    def __getitem__(self, index):
        rows = slice(index * self.batch, (index + 1) * self.batch)
        return np.zeros((self.batch, 2), "float32"), self.labels[rows]


def test_good_labels_pass_as_arrays_tensors_and_datasets():
    labels = np.array([0, 1, 2, 3, -1, 2])
    loss = keras_eql.SigmoidEQL(num_classes=3, ignore_class=-1)
    assert keras_eql.validate_labels(loss, labels) == 6
    assert keras_eql.validate_labels(loss, keras.ops.convert_to_tensor(labels)) == 6
    assert keras_eql.validate_labels(loss, _Batches(labels, 2)) == 6
    dense = np.eye(4, dtype="float32")[[0, 2]] * np.array([0.0, 0.5, 0.9, 0.0], "float32")
    assert keras_eql.validate_labels(keras_eql.EqualizedQualityFocalLoss(num_classes=4), dense) == 8


def test_the_first_bad_value_is_named_with_its_place():
    loss = keras_eql.SoftmaxEQL(num_classes=3)
    with pytest.raises(ValueError, match=r"SoftmaxEQL: label 3 at index 1 is out of range"):
        keras_eql.validate_labels(loss, keras.ops.convert_to_tensor(np.array([0, 3])))
    with pytest.raises(ValueError, match=r"SoftmaxEQL: label 7 at batch 1, index 0 is out of range"):
        keras_eql.validate_labels(loss, _Batches(np.array([0, 1, 7, 2]), 2))
    with pytest.raises(ValueError, match=r"EqualizedFocalLoss: dense target 0.5 at index 1"):
        keras_eql.validate_labels(keras_eql.EqualizedFocalLoss(num_classes=2),
                                  np.array([[1.0, 0.5]], "float32"))
