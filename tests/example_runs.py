"""Run an example in a fresh interpreter under the current Keras backend, without TensorFlow.

The interpreter runs the example's `main` (`--smoke`) and then checks that
no TensorFlow module was imported (a JAX or PyTorch GPU host need not have
TensorFlow). Used by tests/backend_jax and tests/backend_any.
"""

import json
import os
import subprocess
import sys

import keras

from conftest import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"

_RUNNER = """
import runpy, sys
sys.argv = sys.argv[1:]
sys.path.insert(0, {examples!r})
runpy.run_path(sys.argv[0], run_name="__main__")
loaded = sorted(name for name in sys.modules if name.split(".")[0] == "tensorflow")
assert not loaded, "TensorFlow was imported: " + ", ".join(loaded[:5])
print("no tensorflow")
"""


def run_example(name, tmp_path, *flags, devices=1, tag="run"):
    """`(stdout, report)` of `examples/<name>.py --smoke *flags` on `devices` host devices (JAX)."""
    output = tmp_path / f"{name}_{tag}.json"
    environment = dict(os.environ, KERAS_BACKEND=keras.backend.backend(), PYTHONPATH=str(REPO_ROOT),
                       XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    environment.setdefault("JAX_PLATFORMS", "cpu")
    completed = subprocess.run(
        [sys.executable, "-c", _RUNNER.format(examples=str(EXAMPLES)), str(EXAMPLES / f"{name}.py"),
         "--smoke", "--verbose", "0", "--output", str(output), *flags],
        capture_output=True, text=True, timeout=400, cwd=tmp_path, env=environment)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    assert completed.stdout.strip().endswith("no tensorflow")
    return completed.stdout, json.loads(output.read_text())
