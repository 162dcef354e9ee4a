"""Compatibility: the losses in a tf_keras (Keras 2 API) model's `fit`.

With TF_USE_LEGACY_KERAS=1, `tf.keras` is tf_keras 2.x; keras_eql still
needs Keras 3 installed beside it (it is), and its loss objects work as
plain callables in a tf_keras `compile`. The run happens in a child
process (the variable must be set before TensorFlow is imported) and must
give the same statistics, losses and weights as Keras 3 `fit`, with and
without XLA.

tensorflow-addons is not tested here: it is end-of-life and does not import
beside TF >= 2.16; see scripts/legacy_tfa_job.sh and docs/legacy_tfa_job.txt.
"""

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_workers"))
import rel_common  # noqa: E402

pytest.importorskip(
    "tf_keras", reason="tf_keras (the Keras 2 package matching TensorFlow) is not installed")


@pytest.mark.timeout(300)
def test_losses_train_a_tf_keras_model_like_keras3():
    code, output = rel_common.run(
        [rel_common.PYTHON, os.path.join(rel_common.HERE, "tf_keras_worker.py")],
        timeout=280, env=rel_common.child_env(TF_USE_LEGACY_KERAS=1))
    assert code == 0, rel_common.tail(output)
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, rel_common.tail(output)
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["tf.keras"].startswith("tf_keras"), result["tf.keras"]
    assert result["keras"].startswith("3.")
    assert set(result["runs"]) == {"jit_compile=False", "jit_compile=True"}
    assert len(result["runs"]["jit_compile=False"]) == 4
    assert list(result["runs"]["jit_compile=True"]) == ["equalized_focal_loss"]
    for mode, losses in result["runs"].items():
        for name, run in losses.items():
            legacy, keras3 = run["tf_keras"], run["keras3"]
            context = f"{mode}, {name}"
            assert run["legacy_model"].startswith("tf_keras"), context
            assert legacy["steps"] == keras3["steps"] == 8, context
            assert any(v > 0 for v in legacy["positive"]), context
            for key in ("positive", "negative", "loss_history"):
                np.testing.assert_allclose(legacy[key], keras3[key], rtol=1e-5, atol=1e-7,
                                           err_msg=f"{context}: {key}")
            for mine, theirs in zip(legacy["weights"], keras3["weights"]):
                np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6,
                                           err_msg=f"{context}: weights")
