"""Fashion-MNIST loading (each source), the long-tail profile and the groups."""

import gzip
import logging
import os

import numpy as np
import pytest

from keras_eql import data

REAL_DIR = data.SYSTEM_DIR
HAS_REAL_FILES = os.path.isfile(os.path.join(REAL_DIR, "train-images-idx3-ubyte.gz"))


def write_idx(path, array, compress):
    """Write `array` (uint8) as an IDX file, the format of the real files."""
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as handle:
            handle.write(payload)
    else:
        with open(path, "wb") as handle:
            handle.write(payload)


def fake_fashion_mnist(directory, compress=True, train=30, test=20):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (train, 28, 28)), "y_train": np.arange(train) % 10,
        "x_test": rng.integers(0, 256, (test, 28, 28)), "y_test": np.arange(test) % 10,
    }
    for key, stem in data._FILES.items():
        write_idx(directory / stem, arrays[key], compress)
    return arrays


@pytest.fixture
def no_download(monkeypatch):
    """Fail loudly if a test reaches the network path unexpectedly."""
    import keras

    def refuse():
        raise AssertionError("keras.datasets.fashion_mnist.load_data must not be called here")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", refuse)


# -- the three sources -----------------------------------------------------------
@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_local_idx_files_are_read_first(tmp_path, compress, no_download):
    arrays = fake_fashion_mnist(tmp_path, compress)
    loaded = data.load_fashion_mnist(search_dirs=[tmp_path / "missing", tmp_path])
    assert loaded.source == f"idx:{tmp_path}"
    for key, expected in arrays.items():
        np.testing.assert_array_equal(getattr(loaded, key), expected)
        assert getattr(loaded, key).dtype == np.uint8


def test_search_dirs_come_from_the_environment(tmp_path, monkeypatch, no_download):
    fake_fashion_mnist(tmp_path)
    monkeypatch.setenv(data.DIRS_ENV_VAR, os.pathsep.join([str(tmp_path / "none"), str(tmp_path)]))
    assert data.default_search_dirs() == [str(tmp_path / "none"), str(tmp_path)]
    assert data.load_fashion_mnist().source == f"idx:{tmp_path}"


def test_default_search_dirs_are_the_debian_package_then_the_keras_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(data.DIRS_ENV_VAR, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert data.default_search_dirs() == [REAL_DIR, str(tmp_path / "datasets" / "fashion-mnist")]


@pytest.mark.skipif(not HAS_REAL_FILES, reason=f"Debian's dataset-fashion-mnist is not installed in {REAL_DIR} "
                    "(scripts/install_data.sh installs it)")
def test_real_fashion_mnist_files(monkeypatch):
    monkeypatch.delenv(data.DIRS_ENV_VAR, raising=False)
    loaded = data.load_fashion_mnist(download=False, synthetic=False)
    assert loaded.source == f"idx:{REAL_DIR}"
    assert loaded.x_train.shape == (60000, 28, 28) and loaded.x_test.shape == (10000, 28, 28)
    assert data.class_counts(loaded.y_train).tolist() == [6000] * 10
    assert data.class_counts(loaded.y_test).tolist() == [1000] * 10


def test_download_is_tried_when_no_local_files(tmp_path, monkeypatch):
    import keras

    arrays = ((np.zeros((10, 28, 28), np.uint8), np.arange(10, dtype=np.uint8)),
              (np.ones((10, 28, 28), np.uint8), np.arange(10, dtype=np.uint8)))
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", lambda: arrays)
    loaded = data.load_fashion_mnist(search_dirs=[tmp_path], download=True)
    assert loaded.source == "keras-download"
    np.testing.assert_array_equal(loaded.x_test, arrays[1][0])


def test_failed_download_falls_back_to_synthetic_data_loudly(tmp_path, monkeypatch, caplog):
    import keras

    def offline():
        raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with caplog.at_level(logging.WARNING, logger="keras_eql.data"):
        with pytest.warns(data.SyntheticDataWarning, match="USING SYNTHETIC DATA"):
            loaded = data.load_fashion_mnist(search_dirs=[tmp_path], download=True)
    assert loaded.source == "synthetic"
    assert "Name or service not known" in caplog.text
    assert "USING SYNTHETIC DATA" in caplog.text
    assert loaded.x_train.shape == (60000, 28, 28) and loaded.x_test.shape == (10000, 28, 28)
    assert data.class_counts(loaded.y_train).tolist() == [6000] * 10


def test_download_can_be_disabled_by_environment(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv(data.DOWNLOAD_ENV_VAR, "0")
    with pytest.warns(data.SyntheticDataWarning, match="download disabled"):
        assert data.load_fashion_mnist(search_dirs=[tmp_path]).source == "synthetic"


def test_without_synthetic_fallback_the_error_names_the_directories(tmp_path, no_download):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        data.load_fashion_mnist(search_dirs=[tmp_path], download=False, synthetic=False)


def test_a_malformed_directory_is_skipped_with_a_warning(tmp_path, caplog, no_download):
    broken, good = tmp_path / "broken", tmp_path / "good"
    broken.mkdir(), good.mkdir()
    fake_fashion_mnist(broken)
    with gzip.open(broken / "train-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(b"\x00\x00\x08\x03" + np.asarray([30, 28, 28], ">u4").tobytes() + b"short")
    fake_fashion_mnist(good)
    with caplog.at_level(logging.WARNING, logger="keras_eql.data"):
        assert data.load_fashion_mnist(search_dirs=[broken, good]).source == f"idx:{good}"
    assert "Skipping unreadable" in caplog.text and "holds 5" in caplog.text


def test_read_idx_rejects_non_idx_files(tmp_path):
    path = tmp_path / "not-idx"
    path.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        data.read_idx(str(path))


def test_synthetic_classes_are_learnable_and_distinct():
    synthetic = data.synthetic_fashion_mnist(train_per_class=200, test_per_class=50, seed=3)
    x_train = synthetic.x_train.reshape(len(synthetic.x_train), -1).astype(np.float32)
    x_test = synthetic.x_test.reshape(len(synthetic.x_test), -1).astype(np.float32)
    centroids = np.stack([x_train[synthetic.y_train == c].mean(0) for c in range(10)])
    distances = ((x_test[:, None, :] - centroids[None]) ** 2).sum(-1)
    accuracy = np.mean(distances.argmin(1) == synthetic.y_test)
    # Learnable (far above 10% chance) but not trivial for a nearest-centroid rule.
    assert 0.4 < accuracy < 0.99, accuracy


# -- long tail and groups --------------------------------------------------------
def test_long_tailed_counts_follow_the_exponential_profile():
    counts = data.long_tailed_counts(6000, 10, 100)
    assert counts.tolist() == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    expected = np.floor(6000 * 100.0 ** (-np.arange(10) / 9) + 1e-6)
    np.testing.assert_array_equal(counts, expected)
    assert data.long_tailed_counts(6000, 10, 1).tolist() == [6000] * 10


@pytest.mark.parametrize("bad", [0.5, float("nan"), float("inf"), -3])
def test_long_tailed_counts_reject_bad_imbalance_factors(bad):
    with pytest.raises(ValueError, match=f"got {bad!r}"):
        data.long_tailed_counts(6000, 10, bad)


def test_long_tailed_indices_pick_the_profile_at_random_per_seed():
    labels = np.repeat(np.arange(10), 600)
    first = data.long_tailed_indices(labels, 100, seed=0)
    assert data.class_counts(labels[first]).tolist() == data.long_tailed_counts(600, 10, 100).tolist()
    assert len(np.unique(first)) == len(first)
    np.testing.assert_array_equal(first, data.long_tailed_indices(labels, 100, seed=0))
    assert not np.array_equal(first, data.long_tailed_indices(labels, 100, seed=1))


def test_head_medium_tail_of_fashion_mnist_lt_is_as_documented():
    groups = data.head_medium_tail(data.long_tailed_counts(6000, 10, 100))
    assert groups == {"head": [0, 1, 2, 3], "medium": [4, 5, 6], "tail": [7, 8, 9]}
    # Ranked by count, not by index.
    assert data.head_medium_tail([5, 50, 500])["head"] == [2]


def test_head_medium_tail_matches_keras_eql_metrics_rank_groups():
    metrics = pytest.importorskip("keras_eql.metrics", reason="keras_eql.metrics is not part of this checkout")
    counts = [60, 6000, 278, 3596, 100, 774, 2156, 464, 1292, 166]
    groups = data.head_medium_tail(counts)
    ranks = metrics.rank_groups(counts)
    for index, name in enumerate(("head", "medium", "tail")):
        assert groups[name] == np.flatnonzero(ranks == index).tolist()


def test_group_accuracy_averages_per_class_accuracies():
    y_true = np.array([0, 0, 0, 1, 2, 2])
    y_pred = np.array([0, 0, 1, 1, 0, 2])
    result = data.group_accuracy(y_true, y_pred, {"head": [0, 1], "tail": [2], "empty": [5]})
    assert result["overall"] == pytest.approx(4 / 6)
    assert result["head"] == pytest.approx((2 / 3 + 1) / 2)
    assert result["tail"] == pytest.approx(0.5)
    assert np.isnan(result["empty"])
