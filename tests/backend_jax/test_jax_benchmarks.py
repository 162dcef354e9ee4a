"""The benchmark scripts run under KERAS_BACKEND=jax without TensorFlow (`--smoke`: one call each).

Not timed tests (as tests/test_benchmarks.py): each script runs in a fresh
interpreter, which then checks that no TensorFlow module was imported; the
JSON must show every keras_eql loss timed in every mode against its Keras
counterparts on JAX. No assertion on a duration or a ratio.
"""

import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

CLASSES = {"SigmoidEQL", "EqualizedFocalLoss", "EqualizedQualityFocalLoss", "SoftmaxEQL"}
COUNTERPARTS = {"BinaryCrossentropy", "BinaryFocalCrossentropy(alpha)", "BinaryFocalCrossentropy",
                "SparseCategoricalCrossentropy"}
_RUNNER = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exit:
    if exit.code:
        raise
loaded = sorted(name for name in sys.modules if name.split(".")[0] == "tensorflow")
assert not loaded, "TensorFlow was imported: " + ", ".join(loaded[:5])
print("no tensorflow")
"""


def _run(script, tmp_path, *extra):
    output = tmp_path / "result.json"
    environment = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(REPO_ROOT))
    environment.setdefault("JAX_PLATFORMS", "cpu")
    completed = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(REPO_ROOT / "benchmarks" / script), "--smoke",
         "--json", str(output), *extra],
        capture_output=True, text=True, timeout=400, cwd=REPO_ROOT, env=environment)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert completed.stdout.strip().endswith("no tensorflow")
    return json.loads(output.read_text()), completed.stdout


@pytest.mark.parametrize("script", ["loss_overhead.py", "train_step.py"])
def test_smoke_run_times_every_loss_against_keras_on_jax(script, tmp_path):
    # jit and class ids only, to keep the test short: eager JAX dispatches the losses'
    # ops one by one (slower than compiling them), the dense layouts run the same code.
    payload, stdout = _run(script, tmp_path, "--labels", "sparse", "--modes", "jit")
    modes = {"jit"}
    machine = payload["machine"]
    assert machine["backend"] == "jax" and machine["jax"] and machine["tensorflow"] is None
    results = payload["results"]
    assert {r["mode"] for r in results} == modes
    for mode in modes:
        ran = {r.get("class") for r in results if r["mode"] == mode and not r.get("counterpart")}
        assert ran == CLASSES, mode
        keras_losses = {r["variant"] for r in results if r["mode"] == mode and r.get("counterpart")}
        assert keras_losses == COUNTERPARTS, mode
    assert {r["implementation"] for r in results if not r.get("counterpart")} == {"fused"}
    for r in results:
        assert r["times_ms"] and all(math.isfinite(t) and t > 0 for t in r["times_ms"]), r["variant"]
    compared = {(row["mode"], row["variant"]) for row in payload["ratios"]}
    for r in results:
        if not r.get("counterpart"):
            assert (r["mode"], r["variant"]) in compared, r["variant"]
    assert all(math.isfinite(row["ratio"]) and row["ratio"] > 0 for row in payload["ratios"])
    assert "## ratios" in stdout


def test_tensorflow_only_choices_are_refused_by_name(tmp_path):
    environment = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(REPO_ROOT))
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "loss_overhead.py"), "--smoke",
         "--implementations", "fused,autodiff"],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, env=environment)
    assert completed.returncode == 2
    assert ("--implementations autodiff: under KERAS_BACKEND=jax this benchmark runs fused."
            in completed.stderr)
