"""Probe: does `model.fit` work under MultiWorkerMirroredStrategy?

Not a test (Keras may fix it any day); a reproducible check behind the
"Multi-worker" paragraph of the README. Starts 2 worker processes on
127.0.0.1 (free ports, TF_CONFIG), each runs `model.fit` once with a stock
Keras loss and once with `keras_eql.EqualizedFocalLoss`, bounded by a timeout;
every worker is killed (by process group) on exit.

    python tests/_workers/mwms_fit_probe.py [--python /path/to/python]

`--python` selects the interpreter of the workers, e.g. a throwaway venv with
a newer Keras. Prints one line per worker and loss: OK or the error.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras
    import keras.src.backend

    if not hasattr(keras.src.backend, "set_keras_mask"):
        # keras-nightly 3.16 moved it; keras_eql 0.1 imports the old path.
        from keras.src.backend.common.masking import set_keras_mask

        keras.src.backend.set_keras_mask = set_keras_mask
        results_note = "patched keras.src.backend.set_keras_mask for keras_eql"
    else:
        results_note = ""
    import keras_eql

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 5, size=(64,)).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    results = {"keras": keras.__version__, "tensorflow": tf.__version__, "note": results_note}
    losses = {
        "SparseCategoricalCrossentropy": lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "EqualizedFocalLoss": lambda: keras_eql.EqualizedFocalLoss(num_classes=5),
    }
    for name, make in losses.items():
        try:
            with strategy.scope():
                model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(5)])
                model.compile(optimizer="sgd", loss=make())
            history = model.fit(data, epochs=1, verbose=0)
            results[name] = f"OK loss={history.history['loss'][-1]:.4f}"
        except Exception as error:  # noqa: BLE001 - the probe reports any failure
            text = " ".join(str(error).split())
            if len(text) > 260:  # the PerReplica repr dumps the whole batch
                text = text[:80] + " ... " + text[-180:]
            results[name] = f"{type(error).__name__}: {text}"
    print("RESULT " + json.dumps(results), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    logs, procs = [], []
    try:
        for index in range(2):
            env = dict(os.environ, PYTHONPATH=REPO, TF_CONFIG=json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}))
            log = tempfile.TemporaryFile(mode="w+")
            logs.append(log)
            procs.append(subprocess.Popen(
                [args.python, os.path.abspath(__file__), "--worker"], env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.time() + args.timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for index, log in enumerate(logs):
        log.seek(0)
        lines = [line for line in log.read().splitlines() if line.startswith("RESULT ")]
        if lines:
            print(f"worker{index} rc={procs[index].returncode}: {lines[-1][7:]}")
        else:
            log.seek(0)
            tail = " | ".join(log.read().strip().splitlines()[-3:])
            print(f"worker{index} rc={procs[index].returncode}: no result: {tail[-600:]}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker()
    else:
        main()
