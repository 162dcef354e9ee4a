"""Under KERAS_BACKEND=torch, keras_eql imports, trains and saves without TensorFlow or JAX.

Run in a fresh interpreter, so that nothing imported by other tests counts.
The names that work are JAX's: the TensorFlow-only ones raise saying so.
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

    assert keras.backend.backend() == "torch", keras.backend.backend()
    labels, logits = np.arange(8) % 3, np.ones((8, 3), "float32")
    for loss in (keras_eql.SoftmaxEQL(), keras_eql.EqualizedFocalLoss(),
                 keras_eql.EqualizedQualityFocalLoss(), keras_eql.FocalSigmoidEQL()):
        assert np.isfinite(float(loss(labels, logits))), type(loss).__name__
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile("sgd", loss=keras_eql.SigmoidEQL())
    keras_eql.attach(model).fit(np.ones((8, 4), "float32"), labels, verbose=0)
    assert model.loss.statistics.step_count() == 1
    model.save(sys.argv[1])
    loaded = keras_eql.load_model(sys.argv[1])
    loaded.fit(np.ones((8, 4), "float32"), labels, verbose=0)
    assert loaded.loss.statistics.step_count() == 2
    keras_eql.gradient_statistics(loaded)
    for name in keras_eql._TENSORFLOW_ONLY:
        try:
            getattr(keras_eql, name)
        except AttributeError as error:
            assert "KERAS_BACKEND=tensorflow only" in str(error), error
        else:
            raise AssertionError(f"{name} is TensorFlow-only in this version")
    assert not set(keras_eql.__all__) & set(keras_eql._TENSORFLOW_ONLY)
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("tensorflow", "jax"))
    assert not loaded, loaded[:5]
    print("ok")
""")


def test_keras_eql_trains_and_saves_without_importing_tensorflow_or_jax(tmp_path):
    environment = dict(os.environ, KERAS_BACKEND="torch", PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path / "model.keras")],
                            env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
