"""Under KERAS_BACKEND=jax, keras_eql imports, trains and saves without TensorFlow.

Run in a fresh interpreter, so that nothing imported by other tests counts.
"""

import os
import subprocess
import sys
import textwrap

from conftest import REPO_ROOT

_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import keras
    import keras_eql

    assert keras.backend.backend() == "jax", keras.backend.backend()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    for loss in (keras_eql.SigmoidEQL(objectness=False), keras_eql.SoftmaxEQL(),
                 keras_eql.EqualizedFocalLoss(), keras_eql.EqualizedQualityFocalLoss(),
                 keras_eql.FocalSigmoidEQL()):
        model.compile("sgd", loss=loss)
        keras_eql.attach(model)
        labels = np.arange(8) % (2 if isinstance(loss, keras_eql.SoftmaxEQL) else 3)
        model.fit(np.ones((8, 4), "float32"), labels, verbose=0)
        assert loss.statistics.step_count() == 1, type(loss).__name__
        model.save(sys.argv[1])
        keras_eql.attach(keras.models.load_model(sys.argv[1]))
    keras_eql.gradient_statistics(model)
    try:
        keras_eql.SeesawLoss
    except AttributeError as error:
        assert "KERAS_BACKEND=tensorflow only" in str(error), error
    else:
        raise AssertionError("SeesawLoss is TensorFlow-only in this version")
    loaded = sorted(name for name in sys.modules if name.split(".")[0] == "tensorflow")
    assert not loaded, loaded[:5]
    print("ok")
""")


def test_keras_eql_trains_and_saves_without_importing_tensorflow(tmp_path):
    environment = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path / "model.keras")],
                            env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
