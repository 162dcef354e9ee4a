"""The examples under KERAS_BACKEND=jax: `--smoke` runs without TensorFlow, DataParallel, clear refusals.

Each run is a fresh interpreter that runs the example's `main` and then
checks that no TensorFlow module was imported (a JAX GPU host need not have
TensorFlow). The DataParallel check runs the same smoke training on 2 host
devices with and without `--strategy data_parallel` and compares the
statistics the loss accumulated.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))

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
    output = tmp_path / f"{name}_{tag}.json"
    environment = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(REPO_ROOT),
                       XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    environment.setdefault("JAX_PLATFORMS", "cpu")
    completed = subprocess.run(
        [sys.executable, "-c", _RUNNER.format(examples=str(EXAMPLES)), str(EXAMPLES / f"{name}.py"),
         "--smoke", "--verbose", "0", "--output", str(output), *flags],
        capture_output=True, text=True, timeout=400, cwd=tmp_path, env=environment)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    assert completed.stdout.strip().endswith("no tensorflow")
    return completed.stdout, json.loads(output.read_text())


def test_classification_lt_smoke_trains_softmax_eql(tmp_path):
    _, report = run_example("classification_lt", tmp_path, "--methods", "softmax_eql",
                            "--imbalance-factor", "50")
    row = report["results"]["softmax_eql"]
    assert report["class_counts"][0] / report["class_counts"][-1] == pytest.approx(50, rel=0.02)
    for key in ("overall", "head", "medium", "tail"):
        assert 0.0 <= row[key] <= 1.0, (key, row[key])
    assert row["statistics_steps"] == 512 // 64  # one epoch of the smoke subset, each step counted once


def test_detection_lt_data_parallel_equals_one_device(tmp_path):
    """Same global batches on 2 host devices (DataParallel) and on 1: the same statistics.

    The loss's per-class sums run over the global batch (one global-view
    program), so they agree up to float32 summation order (measured: the
    negative sums differ by about 1e-7 relative, the positive ones not at
    all); 1e-5 leaves room for other XLA versions and would still catch a
    sum over half the batch (a factor of about 2) or a step counted twice.
    """
    flags = ("--methods", "efl")
    single_stdout, single = run_example("detection_lt", tmp_path, *flags, devices=2, tag="default")
    parallel_stdout, parallel = run_example("detection_lt", tmp_path, *flags, "--strategy",
                                            "data_parallel", devices=2, tag="parallel")
    assert "DataParallel over 2 device(s)." in parallel_stdout
    assert "DataParallel" not in single_stdout
    one, two = single["results"]["efl"], parallel["results"]["efl"]
    assert one["statistics_steps"] >= 2 and two["statistics_steps"] == one["statistics_steps"]
    for key in ("positive", "negative", "ratio"):
        assert len(one[key]) == 36, key
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=0, err_msg=key)
    assert min(one["negative"]) > 0 and max(one["positive"]) > 0  # the statistics moved
    assert two["AP"] == pytest.approx(one["AP"], abs=1e-3)


def test_every_method_and_recipe_is_accepted_under_jax():
    import classification_lt

    args = classification_lt.parse_args(["--methods", "softmax_eql,balanced_softmax,logit_adjusted,seesaw",
                                         "--recipe", "authors"])
    assert args.methods == ["softmax_eql", "balanced_softmax", "logit_adjusted", "seesaw"]


@pytest.mark.parametrize("strategy", ["mirrored", "multiworker", "tpu"])
def test_tf_distribute_strategies_point_to_data_parallel(strategy):
    import _common

    with pytest.raises(SystemExit, match=f"--strategy {strategy} is a tf.distribute strategy, "
                                         "for KERAS_BACKEND=tensorflow; under jax use --strategy "
                                         "data_parallel"):
        _common.resolve_strategy(strategy, True)


def test_shuffled_batches_are_numpy_full_batches_reshuffled_every_epoch():
    import _common

    inputs = np.arange(10, dtype="float32")[:, None]
    dataset, steps = _common.shuffled_batches(inputs, {"labels": np.arange(10)}, 4, seed=0)
    assert steps == len(dataset) == 2  # the partial batch is dropped
    first = np.concatenate([dataset[index][0][:, 0] for index in range(steps)])
    assert all(np.array_equal(dataset[i][0][:, 0], dataset[i][1]["labels"]) for i in range(steps))
    dataset.on_epoch_end()
    second = np.concatenate([dataset[index][0][:, 0] for index in range(steps)])
    assert len(set(first)) == 8 and not np.array_equal(first, second)
