"""Shared test fixtures: quiet TensorFlow, golden vectors, tiny models."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# tests/backend_jax needs KERAS_BACKEND=jax, set before Keras is imported:
# `make test-jax` runs it in its own venv (without TensorFlow).
collect_ignore = [] if os.environ.get("KERAS_BACKEND") == "jax" else ["backend_jax"]

GOLDEN_DIR = pathlib.Path(__file__).parent / "golden"
REPO_ROOT = pathlib.Path(__file__).parent.parent


def load_golden(name):
    """The arrays of `golden_<name>.npz` as a dict."""
    with np.load(GOLDEN_DIR / f"golden_{name}.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    """Each test starts with float32 policy and a clean Keras session."""
    import keras

    keras.config.set_dtype_policy("float32")
    keras.utils.clear_session()
    yield
    keras.config.set_dtype_policy("float32")
