"""Faults: interrupted and resumed training loses nothing and counts nothing twice.

(a) `model.fit` with `keras.callbacks.BackupAndRestore`, interrupted by an
    exception and resumed with a NEW model and a NEW (lazy) loss:
    * epoch-level backups: final statistics and weights are bitwise equal to
      an uninterrupted run;
    * batch-level backups (`save_freq=int`): Keras 3.15 records the batch but
      resumes at the start of the interrupted epoch, so the batches of that
      epoch before the backup are trained twice. The statistics are saved in
      the same file as the weights, so they replay with them: the result is
      bitwise the run that sees that batch sequence.
(b) Two MultiWorkerMirroredStrategy workers; one is SIGKILLed mid-training,
    the other is killed after a grace period, both restart from the last
    checkpoint: final statistics equal the uninterrupted single-process run.
"""

import json
import os
import shutil
import sys

import keras
import numpy as np
import pytest

import keras_eql

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_workers"))
import rel_common  # noqa: E402

NUM_CLASSES = 4
ROWS, BATCH, EPOCHS = 48, 8, 3
BATCHES = ROWS // BATCH

LOSSES = {
    "sigmoid_eql": lambda n: keras_eql.SigmoidEQL(num_classes=n, objectness=True),
    "softmax_eql": lambda n: keras_eql.SoftmaxEQL(num_classes=n),
    "equalized_focal_loss": lambda n: keras_eql.EqualizedFocalLoss(num_classes=n),
    "equalized_quality_focal_loss": lambda n: keras_eql.EqualizedQualityFocalLoss(num_classes=n),
}


def _data(name):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(ROWS, 6)).astype("float32")
    top = NUM_CLASSES if name == "softmax_eql" else NUM_CLASSES + 1
    y = rng.integers(0, top, size=ROWS).astype("int32")
    if name != "softmax_eql":
        y[::7] = -1  # ignored rows
    return x, y


def _model(name, *, lazy):
    keras.utils.set_random_seed(3)
    width = NUM_CLASSES + (1 if name == "sigmoid_eql" else 0)
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(width),
    ])
    loss = LOSSES[name](None if lazy else NUM_CLASSES)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), loss=loss)
    return model, loss


class Interrupt(keras.callbacks.Callback):
    """Raises after batch `batch` of epoch `epoch`, like a crash mid-epoch."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise RuntimeError("simulated interruption")


def _state(model, loss):
    statistics = loss.gradient_statistics()
    return {
        "weights": [np.array(w) for w in model.get_weights()],
        "positive": statistics["positive"],
        "negative": statistics["negative"],
        "steps": float(loss.statistics.steps.numpy()),
    }


def _assert_same_state(actual, expected, context):
    assert actual["steps"] == expected["steps"], context
    np.testing.assert_array_equal(actual["positive"], expected["positive"], err_msg=context)
    np.testing.assert_array_equal(actual["negative"], expected["negative"], err_msg=context)
    assert len(actual["weights"]) == len(expected["weights"])
    for mine, theirs in zip(actual["weights"], expected["weights"]):
        np.testing.assert_array_equal(mine, theirs, err_msg=context)


def _interrupt_and_resume(name, backup_dir, save_freq, epoch, batch):
    x, y = _data(name)
    model, loss = _model(name, lazy=False)
    backup = keras.callbacks.BackupAndRestore(backup_dir, save_freq=save_freq)
    with pytest.raises(RuntimeError, match="simulated interruption"):
        model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
                  callbacks=[backup, Interrupt(epoch, batch)])
    with open(os.path.join(backup_dir, "training_metadata.json")) as handle:
        metadata = json.load(handle)
    # A fresh process would build everything anew: new model, new lazy loss.
    model, loss = _model(name, lazy=True)
    history = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
                        callbacks=[keras.callbacks.BackupAndRestore(backup_dir, save_freq=save_freq)])
    return _state(model, loss), metadata, len(history.history["loss"])


def _uninterrupted(name, batch_order=None):
    x, y = _data(name)
    model, loss = _model(name, lazy=False)
    if batch_order is None:
        model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
    else:  # one epoch over the given sequence of batches
        rows = np.concatenate([np.arange(b * BATCH, (b + 1) * BATCH) for b in batch_order])
        model.fit(x[rows], y[rows], batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    return _state(model, loss)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_backup_and_restore_epoch_level_equals_uninterrupted(name, tmp_path):
    reference = _uninterrupted(name)
    assert reference["steps"] == EPOCHS * BATCHES
    # Interrupted in the middle of epoch 1 (0-based): the backup is from the
    # end of epoch 0; the steps of epoch 1 already taken are discarded with
    # the weights they changed.
    state, metadata, epochs_run = _interrupt_and_resume(
        name, str(tmp_path / "backup"), "epoch", epoch=1, batch=3)
    assert metadata["epoch"] == 1
    assert epochs_run == EPOCHS - 1
    _assert_same_state(state, reference, f"{name}: resumed vs uninterrupted")


@pytest.mark.parametrize("name", ["sigmoid_eql", "equalized_focal_loss"])
def test_backup_and_restore_batch_level_replays_consistently(name, tmp_path):
    # save_freq=4 with 6 batches per epoch: backups after batch 3 of epoch 0
    # and after batch 1 of epoch 1; interrupted after batch 3 of epoch 1.
    state, metadata, epochs_run = _interrupt_and_resume(
        name, str(tmp_path / "backup"), 4, epoch=1, batch=3)
    assert metadata == {"epoch": 1, "batch": 1}
    assert epochs_run == EPOCHS - 1
    # Keras 3.15 ignores the recorded batch and restarts epoch 1 at batch 0:
    # batches 0 and 1 of epoch 1 are trained twice. Weights and statistics
    # both come from the backup, so they stay consistent: the result is
    # exactly the run over this batch sequence, 2 steps more than EPOCHS * BATCHES.
    replayed = list(range(BATCHES)) + [0, 1] + list(range(BATCHES)) * (EPOCHS - 1)
    reference = _uninterrupted(name, batch_order=replayed)
    assert reference["steps"] == EPOCHS * BATCHES + 2
    _assert_same_state(state, reference, f"{name}: resumed vs replayed batch sequence")


STEPS = 8


@pytest.mark.timeout(500)
def test_multiworker_worker_killed_and_restarted(tmp_path):
    reference = rel_common.SingleReference.start(STEPS)
    example = rel_common.example_module()
    checkpoints = tmp_path / "checkpoints"
    out = tmp_path / "result"

    def worker_args(crash):
        def args(index):
            extra = ["--steps", str(STEPS), "--checkpoint-dir", str(checkpoints),
                     "--checkpoint-every", "2", "--out", f"{out}.worker{index}.json"]
            if crash:
                extra += ["--crash-worker", "1", "--crash-after-step", "5"]
            return extra
        return args

    # Run 1: worker 1 SIGKILLs itself after step 5 (the last checkpoint is
    # step 4, so step 5 is lost); worker 0 then blocks in a collective and is
    # killed by the launcher after the grace period.
    runs = example.launch(worker_args(True), num_workers=2, timeout=200, grace=5,
                          python=rel_common.PYTHON, env=rel_common.child_env())
    codes = [code for code, _ in runs]
    assert codes[1] == -9, f"worker 1 should have been SIGKILLed:\n{rel_common.tail(runs[1][1])}"
    assert codes[0] != 0, "worker 0 cannot finish without worker 1"
    assert "step 5/8" in runs[1][1] and "step 6/8" not in runs[1][1]
    assert not any(os.path.exists(f"{out}.worker{index}.json") for index in range(2))
    assert sorted(p for p in os.listdir(checkpoints) if p.endswith(".index")) == [
        "ckpt-2.index", "ckpt-4.index"]

    # Run 2: both workers restart (on new ports) from the step-4 checkpoint.
    runs = example.launch(worker_args(False), num_workers=2, timeout=200, grace=10,
                          python=rel_common.PYTHON, env=rel_common.child_env())
    for index, (code, output) in enumerate(runs):
        assert code == 0, f"restarted worker {index} exited with {code}:\n{rel_common.tail(output)}"
    single = reference.result()
    for index in range(2):
        with open(f"{out}.worker{index}.json") as handle:
            result = json.load(handle)
        assert result["resumed_from"] == 4
        assert result["replicas_in_sync"] == 2
        for name, ours in result["losses"].items():
            ref = single["losses"][name]
            context = f"worker {index}, {name}"
            # Nothing lost, nothing counted twice: exactly STEPS steps, and
            # the sums of the single uninterrupted run (step 5 is redone
            # from the restored statistics, not added on top of them).
            assert ours["steps"] == ref["steps"] == STEPS, context
            for key in ("positive", "negative"):
                np.testing.assert_allclose(ours[key], ref[key], rtol=1e-5, atol=1e-7,
                                           err_msg=f"{context}: {key}")
            for mine, theirs in zip(ours["weights"], ref["weights"]):
                np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6,
                                           err_msg=f"{context}: weights")
    shutil.rmtree(checkpoints, ignore_errors=True)
