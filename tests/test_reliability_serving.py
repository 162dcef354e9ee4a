"""Serving: models trained with each loss export to SavedModels that a fresh
process serves with plain TensorFlow, keras_eql unimportable there.

The losses (and their statistics) are training-time only; the exported graph
holds the model. For Sigmoid-EQL with an objectness column, the scoring layer
`keras_eql.SigmoidEQLScores` is part of the exported graph: its output
`p_j * (1 - p_bg)` is served without keras_eql.
"""

import os
import sys

import keras
import numpy as np

import keras_eql

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_workers"))
import rel_common  # noqa: E402

C = 4


def _train(loss, width, labels):
    keras.utils.set_random_seed(11)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(12, activation="relu"),
                              keras.layers.Dense(width)])
    model.compile(keras.optimizers.SGD(0.1), loss=loss)
    model.fit(x, labels(rng, 64), batch_size=16, epochs=2, verbose=0)
    assert loss.statistics.steps.numpy() == 8  # really trained with the loss
    return model


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_exported_models_serve_without_keras_eql(tmp_path):
    sparse = lambda rng, n: rng.integers(0, C + 1, size=n)  # noqa: E731
    classes = lambda rng, n: rng.integers(0, C, size=n)  # noqa: E731
    trained = {
        "softmax_eql": _train(keras_eql.SoftmaxEQL(), C, classes),
        "equalized_focal_loss": _train(keras_eql.EqualizedFocalLoss(), C, sparse),
        "equalized_quality_focal_loss": _train(keras_eql.EqualizedQualityFocalLoss(), C, sparse),
        "sigmoid_eql": _train(keras_eql.SigmoidEQL(objectness=True), C + 1, sparse),
    }
    x = np.random.default_rng(1).normal(size=(9, 6)).astype("float32")
    expected, directories = {}, []
    for name, model in trained.items():
        directory = str(tmp_path / name)
        model.export(directory, verbose=False)
        expected[name] = model.predict(x, verbose=0)
        directories.append(directory)
    # Sigmoid-EQL: serve calibrated scores, the scoring layer inside the graph.
    logits_model = trained["sigmoid_eql"]
    inputs = keras.Input((6,))
    scoring = keras.Model(inputs, keras_eql.SigmoidEQLScores()(logits_model(inputs)))
    directory = str(tmp_path / "sigmoid_eql_scores")
    scoring.export(directory, verbose=False)
    directories.append(directory)
    logits = expected["sigmoid_eql"]
    background = _sigmoid(logits[:, -1:])
    expected["sigmoid_eql_scores"] = np.concatenate(
        [_sigmoid(logits[:, :-1]) * (1.0 - background), background], axis=1)

    np.savez(tmp_path / "inputs.npz", x=x)
    outputs = tmp_path / "outputs.npz"
    env = rel_common.child_env(REPO_ROOT=rel_common.REPO, PYTHONPATH="")
    code, output = rel_common.run(
        [rel_common.PYTHON, os.path.join(rel_common.HERE, "serve_worker.py"),
         str(tmp_path / "inputs.npz"), str(outputs), *directories],
        timeout=180, env=env, cwd=str(tmp_path))
    assert code == 0, rel_common.tail(output)
    assert "import keras_eql: ImportError" in output
    served = np.load(outputs)
    assert sorted(served.files) == sorted(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(served[name], values, rtol=1e-5, atol=1e-6, err_msg=name)
    scores = served["sigmoid_eql_scores"]
    assert ((scores >= 0) & (scores <= 1)).all()
