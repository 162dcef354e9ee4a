"""MirroredStrategy on 2 logical CPU devices equals one device (rtol 1e-5)."""

import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


def _run(*arguments):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tests" / "_core_mirrored.py"), *arguments],
        capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    line = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")][-1]
    return json.loads(line[len("REPORT "):])


@pytest.fixture(scope="module")
def report():
    return _run()


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("kind", ["sigmoid_eql", "softmax_eql", "efl", "eqfl"])
def test_mirrored_statistics_equal_single_device(report, kind, lazy):
    entry = report[f"{kind}/lazy={lazy}"]
    assert entry["distributed"], "statistics must be MirroredVariables"
    assert entry["steps"] == 4.0  # 2 epochs x 2 global batches, counted once
    assert entry["replica_copies_equal"]
    for key, difference in entry["max_relative"].items():
        assert difference < 1e-5, (key, difference)
    assert entry["max_weight_difference"] < 1e-5


def test_loss_built_outside_the_strategy_is_refused(report):
    message = report["outside_scope_error"]
    assert message is not None and "strategy.scope()" in message
    assert "EqualizedFocalLoss" in message


def test_mirrored_sigmoid_eql_statistics_equal_golden_with_uneven_ignored_rows():
    """Per-sample sums: the replica sum equals one device on the global batch,
    whatever each replica counts (0 to 16 of its 16 rows)."""
    entry = _run("varying_rows")
    # A bad label met by one replica reaches every replica's record.
    assert entry["bad_label_gathering"] == {"any_bad": [True, True], "value": [7.0, 7.0]}
    assert entry["steps"] == 8.0
    for key, difference in entry["max_relative"].items():
        assert difference < 1e-5, (key, difference)
