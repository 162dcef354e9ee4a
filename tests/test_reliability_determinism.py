"""Determinism: with `tf.config.experimental.enable_op_determinism()`, two
training runs give bitwise-identical statistics.

The setting is process-global and cannot be turned off again, so the runs
happen in a child process (tests/_workers/determinism_worker.py).
"""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_workers"))
import rel_common  # noqa: E402


@pytest.mark.timeout(300)
def test_two_runs_give_bitwise_identical_statistics():
    code, output = rel_common.run(
        [rel_common.PYTHON, os.path.join(rel_common.HERE, "determinism_worker.py")],
        timeout=280)
    assert code == 0, rel_common.tail(output)
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, rel_common.tail(output)
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["deterministic"] is True
    assert len(result["runs"]) == 4
    for name, (first, second) in result["runs"].items():
        assert first["steps"] == second["steps"] == 16, name
        # Keras 3 disables XLA under op determinism; this pins that fact.
        assert first["jit_compile"] is False, name
        assert first["positive"] == second["positive"], name
        assert first["negative"] == second["negative"], name
        assert first["sha256"] == second["sha256"], name
        assert any(value > 0 for value in first["positive"]), name
