"""`examples/classification_lt.py --smoke` under KERAS_BACKEND=jax and =torch, without TensorFlow."""

import pytest

from example_runs import run_example


def test_classification_lt_smoke_trains_softmax_eql(tmp_path):
    _, report = run_example("classification_lt", tmp_path, "--methods", "softmax_eql",
                            "--imbalance-factor", "50")
    row = report["results"]["softmax_eql"]
    assert report["class_counts"][0] / report["class_counts"][-1] == pytest.approx(50, rel=0.02)
    for key in ("overall", "head", "medium", "tail"):
        assert 0.0 <= row[key] <= 1.0, (key, row[key])
    assert row["statistics_steps"] == 512 // 64  # one epoch of the smoke subset, each step counted once
