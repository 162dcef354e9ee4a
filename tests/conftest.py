"""Shared test fixtures: quiet TensorFlow, golden vectors, tiny models."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# tests/backend_jax and tests/backend_torch need KERAS_BACKEND=jax and =torch, set
# before Keras is imported: `make test-jax` and `make test-torch` run each in its own
# venv (without TensorFlow). Each backend collects only its own directory.
# tests/backend_any runs under both.
_BACKEND_SUITES = {"backend_jax": ("jax",), "backend_torch": ("torch",), "backend_any": ("jax", "torch")}
collect_ignore = [suite for suite, backends in _BACKEND_SUITES.items()
                  if os.environ.get("KERAS_BACKEND") not in backends]

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
    # Under PyTorch the garbage collection of `clear_session` takes 0.4-0.9 s a
    # test (its heap is large), half of tests/backend_torch's time; the Keras
    # state (names, dtype policy, Dynamo's caches) is reset without it.
    keras.utils.clear_session(free_memory=keras.backend.backend() != "torch")
    yield
    keras.config.set_dtype_policy("float32")
