"""`keras.distribution.DataParallel` on 2 host devices trains like 1 device, statistics included.

Global-view SPMD: the loss's sums over the batch are global sums, so the
statistics need no collective of their own. Run in a fresh interpreter
(the device count is fixed when JAX starts).
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from conftest import REPO_ROOT

_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, keras
    sys.path.insert(0, sys.argv[1])
    from test_jax_distribution import train

    assert len(jax.devices()) == 2, jax.devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    print(json.dumps(train()))
""")


def train():
    """Kernel and statistics after 8 EFL steps (global batch 16, sample weights)."""
    import keras

    import keras_eql
    from helpers import FEATURES, NUM_CLASSES, long_tailed_data

    features, labels = long_tailed_data("efl", rows=64)
    weights = np.linspace(0.5, 1.5, 64).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(NUM_CLASSES)])
    model.compile(optimizer=keras.optimizers.SGD(0.5),
                  loss=keras_eql.EqualizedFocalLoss(num_classes=NUM_CLASSES))
    keras_eql.attach(model).fit(features, labels, sample_weight=weights, batch_size=16,
                                epochs=2, shuffle=False, verbose=0)
    stats = model.loss.gradient_statistics()
    return {"kernel": model.layers[-1].kernel.numpy().tolist(),
            "positive": stats["positive"].tolist(), "negative": stats["negative"].tolist(),
            "steps": model.loss.statistics.step_count()}


def test_data_parallel_on_two_devices_equals_one_device():
    environment = dict(os.environ, KERAS_BACKEND="jax",
                       PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")]),
                       XLA_FLAGS="--xla_force_host_platform_device_count=2")
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(REPO_ROOT / "tests" / "backend_jax")],
        env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    two = json.loads(result.stdout.strip().splitlines()[-1])
    one = train()
    assert one["steps"] == two["steps"] == 8
    np.testing.assert_allclose(two["kernel"], one["kernel"], rtol=0, atol=1e-6)
    for key in ("positive", "negative"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, err_msg=key)
