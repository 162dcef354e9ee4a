"""Fashion-MNIST and its long-tailed version, Fashion-MNIST-LT.

`load_fashion_mnist()` tries three sources in order and says which one it
used:

1. IDX files (gzipped or raw) in local directories: Debian's
   `dataset-fashion-mnist` package (`/usr/share/datasets/fashion-mnist`),
   then the Keras cache (`$KERAS_HOME/datasets/fashion-mnist`, default
   `~/.keras`). `KERAS_EQL_FASHION_MNIST_DIRS` (paths separated by
   `os.pathsep`) or the `search_dirs` argument replaces that list.
2. `keras.datasets.fashion_mnist.load_data()`, which downloads (and fails
   offline; the failure is caught). `KERAS_EQL_DOWNLOAD=0` or
   `download=False` skips it.
3. A procedurally generated 10-class 28x28 stand-in, announced with a
   `SyntheticDataWarning`, so that the demo still runs on a machine
   without the data. Its numbers say nothing about Fashion-MNIST.

`long_tailed_indices()` builds the exponential profile of Cui et al. (2019)
and Cao et al. (2019), `n_i = int(n_max * IF ** (-i / (C - 1)))`, class 0 the
head; `head_medium_tail()` defines the groups the demo reports.
"""

import collections
import gzip
import logging
import os
import warnings

import numpy as np

logger = logging.getLogger(__name__)

NUM_CLASSES = 10
IMAGE_SIZE = 28
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DIRS_ENV_VAR = "KERAS_EQL_FASHION_MNIST_DIRS"
DOWNLOAD_ENV_VAR = "KERAS_EQL_DOWNLOAD"
SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

FashionMNIST = collections.namedtuple(
    "FashionMNIST", ["x_train", "y_train", "x_test", "y_test", "source"])
FashionMNIST.__doc__ = """Fashion-MNIST arrays (uint8 images `(N, 28, 28)`, uint8 labels `(N,)`).

`source` says where they came from: `"idx:<directory>"`, `"keras-download"`
or `"synthetic"`.
"""


class SyntheticDataWarning(UserWarning):
    """Raised (as a warning) when the synthetic stand-in replaces Fashion-MNIST."""


# -- reading ------------------------------------------------------------------
def default_search_dirs():
    """Directories searched for IDX files, in order.

    Returns:
        A list of paths: `$KERAS_EQL_FASHION_MNIST_DIRS` split on
        `os.pathsep` when set, else the Debian package directory and the
        Keras cache directory.

    Example:
        >>> default_search_dirs()[0]
        '/usr/share/datasets/fashion-mnist'
    """
    override = os.environ.get(DIRS_ENV_VAR)
    if override is not None:
        return [d for d in override.split(os.pathsep) if d]
    keras_home = os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras"))
    return [SYSTEM_DIR, os.path.join(keras_home, "datasets", "fashion-mnist")]


def read_idx(path):
    """Read one IDX file (`.gz` or raw) into a NumPy array.

    Args:
        path: path of the file.

    Returns:
        A uint8 array with the shape stored in the header.

    Raises:
        ValueError: the header is not an unsigned-byte IDX header, or the
            payload does not match the declared shape.

    Example:
        >>> labels = read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
        >>> labels.shape
        (10000,)
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (header {raw[:4]!r}).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], ">u4"))
    data = np.frombuffer(raw, np.uint8, offset=header)
    if data.size != int(np.prod(shape)):
        raise ValueError(
            f"{path}: header declares shape {shape} ({int(np.prod(shape))} values) "
            f"but the file holds {data.size}.")
    return data.reshape(shape)


def _find(directory, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def read_idx_directory(directory):
    """Fashion-MNIST from the four IDX files of one directory.

    Args:
        directory: directory holding `train-images-idx3-ubyte[.gz]` and the
            three other files.

    Returns:
        A `FashionMNIST` with `source="idx:<directory>"`, or None when a file
        is missing.

    Raises:
        ValueError: a file exists but is malformed, or images and labels
            disagree in number.
    """
    paths = {key: _find(directory, stem) for key, stem in _FILES.items()}
    if any(path is None for path in paths.values()):
        return None
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{directory}: {split} images {images.shape} do not match labels {labels.shape}.")
    return FashionMNIST(**arrays, source=f"idx:{directory}")


def _download_allowed(download):
    if download is not None:
        return bool(download)
    return os.environ.get(DOWNLOAD_ENV_VAR, "1").strip().lower() not in ("0", "false", "no")


def load_fashion_mnist(search_dirs=None, *, download=None, synthetic=True, seed=0):
    """Fashion-MNIST from local IDX files, else a download, else synthetic data.

    Args:
        search_dirs: directories to search for IDX files; defaults to
            `default_search_dirs()`.
        download: try `keras.datasets.fashion_mnist` when no local files are
            found; `None` reads `$KERAS_EQL_DOWNLOAD` (default on).
        synthetic: fall back to `synthetic_fashion_mnist()` (with a
            `SyntheticDataWarning`) rather than raising.
        seed: seed of the synthetic fallback.

    Returns:
        A `FashionMNIST` tuple; its `source` names the path taken.

    Raises:
        FileNotFoundError: nothing found and `synthetic=False`.

    Example:
        >>> data = load_fashion_mnist()
        >>> data.x_train.shape, data.source
        ((60000, 28, 28), 'idx:/usr/share/datasets/fashion-mnist')
    """
    directories = default_search_dirs() if search_dirs is None else list(search_dirs)
    for directory in directories:
        directory = os.path.expanduser(directory)
        try:
            found = read_idx_directory(directory)
        except (OSError, ValueError, EOFError) as error:
            logger.warning("Skipping unreadable Fashion-MNIST files in %s: %s", directory, error)
            continue
        if found is not None:
            logger.info("Fashion-MNIST: IDX files in %s", directory)
            return found
    if _download_allowed(download):
        try:
            import keras

            (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
            logger.info("Fashion-MNIST: downloaded with keras.datasets.fashion_mnist")
            return FashionMNIST(x_train, y_train, x_test, y_test, source="keras-download")
        except Exception as error:  # Offline machines fail in many ways (DNS, SSL, HTTP).
            logger.warning("keras.datasets.fashion_mnist.load_data() failed: %s", error)
    if not synthetic:
        raise FileNotFoundError(
            f"Fashion-MNIST IDX files not found in {directories} and the download "
            f"failed or is disabled. Install Debian's `dataset-fashion-mnist` or set "
            f"{DIRS_ENV_VAR}.")
    message = (
        f"Fashion-MNIST not found (searched {directories}; download "
        f"{'failed' if _download_allowed(download) else 'disabled'}): USING SYNTHETIC "
        "DATA, a procedurally generated 10-class stand-in. Results are not "
        "Fashion-MNIST results.")
    warnings.warn(message, SyntheticDataWarning, stacklevel=2)
    logger.warning(message)
    return synthetic_fashion_mnist(seed=seed)


# -- synthetic fallback -------------------------------------------------------
def _class_images(label, count, rng):
    """`count` float images in [0, 1] of one procedural class."""
    grid = np.arange(IMAGE_SIZE, dtype=np.float32)
    yy, xx = grid[None, :, None], grid[None, None, :]
    centre_y = 13.5 + rng.uniform(-3, 3, (count, 1, 1)).astype(np.float32)
    centre_x = 13.5 + rng.uniform(-3, 3, (count, 1, 1)).astype(np.float32)
    size = rng.uniform(6, 10, (count, 1, 1)).astype(np.float32)
    dy, dx = yy - centre_y, xx - centre_x
    radius = np.sqrt(dy ** 2 + dx ** 2)
    period = rng.uniform(4, 6, (count, 1, 1)).astype(np.float32)
    square = (np.abs(dy) < size) & (np.abs(dx) < size)
    # Lambdas: only the requested class's mask is computed.
    shapes = {
        0: lambda: square & (np.mod(dy, period) < period / 2),   # horizontal stripes
        1: lambda: square & (np.mod(dx, period) < period / 2),   # vertical stripes
        2: lambda: radius < size,                                # disc
        3: lambda: (radius < size) & (radius > size - 3),        # ring
        4: lambda: ((np.abs(dy) < 2) & (np.abs(dx) < size))
                   | ((np.abs(dx) < 2) & (np.abs(dy) < size)),   # cross
        5: lambda: square & (np.abs(dy - dx) < 2.5),             # diagonal bar
        6: lambda: square,                                       # filled square
        7: lambda: square & ((np.abs(dy) > size - 3) | (np.abs(dx) > size - 3)),  # frame
        8: lambda: (np.abs(dy) < size) & (np.abs(dx) < (dy + size) / 2),        # triangle
        9: lambda: (np.hypot(dy, dx - size / 2) < size / 2)
                   | (np.hypot(dy, dx + size / 2) < size / 2),   # two blobs
    }
    brightness = rng.uniform(0.5, 1.0, (count, 1, 1)).astype(np.float32)
    images = shapes[label]().astype(np.float32) * brightness
    images += 0.25 * rng.standard_normal(images.shape, dtype=np.float32)
    return np.clip(images, 0.0, 1.0)


def synthetic_fashion_mnist(train_per_class=6000, test_per_class=1000, seed=0):
    """A procedurally generated 10-class stand-in with Fashion-MNIST's layout.

    Each class is one noisy shape (stripes, disc, ring, cross, ...) at a
    random position, size and brightness: learnable, but with enough noise
    that rare classes suffer from imbalance as real ones do.

    Args:
        train_per_class: training images per class (6000 as Fashion-MNIST).
        test_per_class: test images per class (1000 as Fashion-MNIST).
        seed: NumPy seed.

    Returns:
        A `FashionMNIST` with `source="synthetic"`, shuffled.

    Example:
        >>> data = synthetic_fashion_mnist(train_per_class=5, test_per_class=2)
        >>> data.x_train.shape, data.x_train.dtype
        ((50, 28, 28), dtype('uint8'))
    """
    rng = np.random.default_rng(seed)
    splits = []
    for per_class in (train_per_class, test_per_class):
        images = np.concatenate([_class_images(c, per_class, rng) for c in range(NUM_CLASSES)])
        labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.uint8), per_class)
        order = rng.permutation(len(labels))
        splits.append(((images[order] * 255).astype(np.uint8), labels[order]))
    (x_train, y_train), (x_test, y_test) = splits
    return FashionMNIST(x_train, y_train, x_test, y_test, source="synthetic")


# -- long tail ----------------------------------------------------------------
def long_tailed_counts(n_max, num_classes, imbalance_factor):
    """Per-class sizes of the exponential profile `n_max * IF ** (-i / (C - 1))`.

    Args:
        n_max: size of the head class (class 0).
        num_classes: `C`, at least 2.
        imbalance_factor: `n_max / n_min`, at least 1.

    Returns:
        An int64 array of `C` counts (floored, as Cui et al. and Cao et al.).

    Raises:
        ValueError: an argument is out of range.

    Example:
        >>> long_tailed_counts(6000, 10, 100).tolist()
        [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    """
    if isinstance(imbalance_factor, bool) or not np.isfinite(imbalance_factor) or imbalance_factor < 1:
        raise ValueError(f"imbalance_factor must be a finite number >= 1, got {imbalance_factor!r}.")
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
    if int(n_max) != n_max or n_max < 1:
        raise ValueError(f"n_max must be a positive integer, got {n_max!r}.")
    exponents = np.arange(num_classes) / (num_classes - 1)
    # A tiny epsilon keeps exact products (6000 / 100 = 60) from flooring to 59.
    return np.floor(n_max * float(imbalance_factor) ** -exponents + 1e-6).astype(np.int64)


def class_counts(labels, num_classes=NUM_CLASSES):
    """Number of samples per class.

    Args:
        labels: integer labels in `0..num_classes-1`.
        num_classes: length of the result.

    Returns:
        An int64 array of length `num_classes`.

    Example:
        >>> class_counts([0, 0, 2], num_classes=3).tolist()
        [2, 0, 1]
    """
    return np.bincount(np.asarray(labels, np.int64).ravel(), minlength=num_classes)[:num_classes]


def long_tailed_indices(labels, imbalance_factor, *, num_classes=NUM_CLASSES, seed=0):
    """Indices of a long-tailed subset (random images per class, class 0 the head).

    Args:
        labels: integer labels of the balanced set.
        imbalance_factor: `n_max / n_min`; 1 keeps the set balanced.
        num_classes: number of classes.
        seed: NumPy seed of the per-class random choice.

    Returns:
        A sorted int64 array of indices into `labels`.

    Raises:
        ValueError: `imbalance_factor` < 1 or a class is empty.

    Example:
        >>> labels = np.repeat(np.arange(10), 100)
        >>> class_counts(labels[long_tailed_indices(labels, 10)]).tolist()
        [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
    """
    labels = np.asarray(labels, np.int64)
    available = class_counts(labels, num_classes)
    if available.min() < 1:
        raise ValueError(f"every class needs samples to subsample; counts are {available.tolist()}.")
    targets = long_tailed_counts(int(available.min()), num_classes, imbalance_factor)
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in enumerate(targets)]
    return np.sort(np.concatenate(chosen))


def head_medium_tail(counts):
    """Split classes into head, medium and tail thirds by training-set size.

    The 10-class sets here have no few-shot class under the OLTR thresholds
    (> 100 many, < 20 few), so the groups are thirds by frequency rank, as
    `keras_eql.metrics.rank_groups` does (`np.array_split`, so the head gets
    the extra class). For Fashion-MNIST-LT with IF=100 (counts 6000 -> 60):
    head = classes 0-3 (6000, 3596, 2156, 1292 images), medium = 4-6 (774,
    464, 278), tail = 7-9 (166, 100, 60), which is also the split at 1000 and
    200 images. Ties keep the lower class index first.

    Args:
        counts: per-class training counts, at least 3 classes.

    Returns:
        `{"head": [...], "medium": [...], "tail": [...]}`, sorted class ids.

    Example:
        >>> head_medium_tail(long_tailed_counts(6000, 10, 100))["tail"]
        [7, 8, 9]
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size < 3:
        raise ValueError(f"head_medium_tail needs counts of at least 3 classes, got {counts.tolist()}.")
    order = np.argsort(-counts, kind="stable")
    head, medium, tail = np.array_split(order, 3)
    return {"head": sorted(head.tolist()), "medium": sorted(medium.tolist()),
            "tail": sorted(tail.tolist())}


def group_accuracy(y_true, y_pred, groups):
    """Overall accuracy and the mean per-class accuracy of each group.

    Args:
        y_true: integer labels.
        y_pred: predicted labels.
        groups: `{name: [class ids]}`, e.g. from `head_medium_tail()`.

    Returns:
        `{"overall": float, <group name>: float, ...}`; a group none of whose
        classes occur in `y_true` is NaN.

    Example:
        >>> group_accuracy([0, 1, 1], [0, 1, 0], {"head": [0], "tail": [1]})
        {'overall': 0.6666666666666666, 'head': 1.0, 'tail': 0.5}
    """
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    result = {"overall": float(np.mean(y_true == y_pred))}
    for name, classes in groups.items():
        per_class = [np.mean(y_pred[y_true == c] == c) for c in classes if np.any(y_true == c)]
        result[name] = float(np.mean(per_class)) if per_class else float("nan")
    return result
