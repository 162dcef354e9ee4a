"""Under KERAS_BACKEND=jax, keras_eql imports, trains and saves without TensorFlow (baselines included).

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
    for loss in (keras_eql.SeesawLoss(), keras_eql.LogitAdjustedLoss(), keras_eql.BalancedSoftmax(),
                 keras_eql.EQLv1(rare_mask=[0, 0, 1]), keras_eql.get("class_balanced",
                 class_counts=[3, 2, 1]), keras_eql.layers.SigmoidEQLScores()):
        if isinstance(loss, keras.losses.Loss):
            assert np.isfinite(float(loss(labels, logits))), type(loss).__name__
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile("sgd", loss=keras_eql.SeesawLoss())
    keras_eql.attach(model).fit(np.ones((8, 4), "float32"), labels, verbose=0)
    assert model.loss.sample_counts().tolist() == [3.0, 3.0, 2.0]
    keras_eql.functional.softmax_eql(labels, logits, indicator=np.ones(3))
    for name in ("GradientStatistics",):
        try:
            getattr(keras_eql, name)
        except AttributeError as error:
            assert "KERAS_BACKEND=tensorflow only" in str(error), error
        else:
            raise AssertionError(f"{name} is TensorFlow-only in this version")
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
