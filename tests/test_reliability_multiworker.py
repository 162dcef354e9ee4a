"""MultiWorkerMirroredStrategy: 2 worker processes on 127.0.0.1 vs one process.

The workers run `examples/multiworker_ctl.py` (a custom training loop: Keras
3.15's `model.fit` cannot run under this strategy, see
docs/_fragments/reliability.md). Each trains one small model per loss on the
same global batches as the single-process reference; statistics and weights
must agree to float32 round-off, the step counts exactly.
"""

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_workers"))
import rel_common  # noqa: E402

STEPS = 8
LOSSES = ("sigmoid_eql", "softmax_eql", "equalized_focal_loss", "equalized_quality_focal_loss")


def assert_matches_single(result, reference, context):
    """Worker result == single-process result (statistics, ratio, weights)."""
    assert result["replicas_in_sync"] == 2, context
    for name in LOSSES:
        ours, ref = result["losses"][name], reference["losses"][name]
        where = f"{context}, {name}"
        # A distributed variable; a plain one would hold only local sums.
        assert ours["variable_type"] == "MirroredVariable", where
        assert ours["steps"] == ref["steps"] == STEPS, where
        for key in ("positive", "negative", "ratio"):
            np.testing.assert_allclose(ours[key], ref[key], rtol=1e-5, atol=1e-7,
                                       err_msg=f"{where}: {key}")
        assert len(ours["weights"]) == len(ref["weights"]), where
        for mine, theirs in zip(ours["weights"], ref["weights"]):
            np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{where}: weights")


def run_cluster(tmp_path, extra=(), timeout=200, grace=10):
    example = rel_common.example_module()
    out = tmp_path / "result"

    def worker_args(index):
        return ["--steps", str(STEPS), "--out", f"{out}.worker{index}.json", *extra]

    runs = example.launch(worker_args, num_workers=2, timeout=timeout, grace=grace,
                          python=rel_common.PYTHON, env=rel_common.child_env())
    return runs, [f"{out}.worker{index}.json" for index in range(2)]


@pytest.mark.timeout(400)
def test_two_workers_equal_single_process(tmp_path):
    reference = rel_common.SingleReference.start(STEPS)
    runs, paths = run_cluster(tmp_path)
    for index, (code, output) in enumerate(runs):
        assert code == 0, f"worker {index} exited with {code}:\n{rel_common.tail(output)}"
    results = [json.load(open(path)) for path in paths]
    single = reference.result()
    for index, result in enumerate(results):
        assert result["resumed_from"] == 0
        assert_matches_single(result, single, f"worker {index}")
    # Both workers hold the very same (all-reduced) state.
    for name in LOSSES:
        for key in ("positive", "negative", "steps"):
            assert results[0]["losses"][name][key] == results[1]["losses"][name][key], (name, key)
