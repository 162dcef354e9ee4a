"""Multi-worker training with the Equalization Losses: a custom training loop.

Keras 3.15 (and keras-nightly 3.16.0.dev) cannot run `model.fit` under
`tf.distribute.MultiWorkerMirroredStrategy`: it fails on a `PerReplica`
conversion before any loss code runs. A custom training loop works, and the
losses' statistics come out exactly as in a single-process run on the same
global batches: each loss all-reduces (sums) its per-step increments over the
replicas, and Keras scales mean-type reductions by 1/replicas.

This script is both the launcher and the worker. On one machine:

    python examples/multiworker_ctl.py                     # 2 local workers
    python examples/multiworker_ctl.py --single            # 1 process, same batches
    python examples/multiworker_ctl.py --smoke             # 2 steps (the tests run this)
    python examples/multiworker_ctl.py --checkpoint-dir /tmp/eql_ckpt \\
        --crash-worker 1 --crash-after-step 5              # simulate a crash ...
    python examples/multiworker_ctl.py --checkpoint-dir /tmp/eql_ckpt  # ... and resume

The launcher picks free ports on 127.0.0.1, starts one process per worker with
its `TF_CONFIG`, bounds the run by `--timeout` and kills every worker's
process group on exit. When a worker dies, the others are stuck in collective
ops: the launcher gives them `--grace` seconds and then kills them, as a
cluster manager would; rerun with the same `--checkpoint-dir` to resume from
the last checkpoint (weights, optimizer state AND loss statistics, which
`tf.train.Checkpoint` saves because the losses are trackable).

On a real cluster, run `python multiworker_ctl.py --worker` on every host
with its own `TF_CONFIG` and a `--checkpoint-dir` on shared storage.

Every worker trains four small models in lock-step, one per loss:

* `SigmoidEQL(objectness=True)`, sparse labels with background and ignored rows;
* `SoftmaxEQL` with sample weights;
* `EqualizedFocalLoss(normalize_by_positives=True, reduction="sum")`, whose
  normalizer is the global number of positive rows;
* `EqualizedQualityFocalLoss` with dense IoU-quality targets.

`--output FILE.json` receives every worker's final statistics and weights,
`{"args": ..., "results": {"worker0": ..., "worker1": ...}}` (`{"single":
...}` with `--single`); `--out PREFIX` writes one JSON file per worker,
`PREFIX.worker<i>.json`, as the reliability tests read them. With neither,
the results go to `outputs/multiworker_ctl.json` in the repository, a folder
git ignores.
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

NUM_CLASSES = 5
FEATURES = 8
GLOBAL_BATCH = 16
LOSS_NAMES = ("sigmoid_eql", "softmax_eql", "equalized_focal_loss",
              "equalized_quality_focal_loss")
SMOKE_STEPS = 2
# Default `--output`: ignored by git (.gitignore: /outputs/).
DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "outputs", "multiworker_ctl.json")


# -- data -------------------------------------------------------------------
def make_data(steps, seed=0):
    """Deterministic long-tailed global batches, `(steps, GLOBAL_BATCH, ...)` each.

    Ignored rows (label -1) are placed so that both halves of every global
    batch hold the same number: with `sum_over_batch_size` Keras divides by
    the number of valid rows *of each replica* (as for its own
    `ignore_class`), which equals the global mean only when the replicas
    have equally many valid rows.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (steps, GLOBAL_BATCH)
    frequencies = 0.5 ** np.arange(NUM_CLASSES + 1)  # class C is background
    frequencies /= frequencies.sum()
    x = rng.normal(size=shape + (FEATURES,)).astype("float32")
    labels = rng.choice(NUM_CLASSES + 1, size=shape, p=frequencies).astype("int32")
    half = GLOBAL_BATCH // 2
    for step in range(steps):
        for part in range(2):
            rows = rng.choice(half, size=step % 2 + 1, replace=False) + part * half
            labels[step, rows] = -1
    softmax_labels = rng.choice(NUM_CLASSES, size=shape, p=frequencies[:-1] / frequencies[:-1].sum())
    sample_weight = rng.uniform(0.5, 2.0, size=shape).astype("float32")
    quality = np.zeros(shape + (NUM_CLASSES,), "float32")
    hot = rng.random(shape) < 0.7
    rows = np.nonzero(hot)
    quality[rows + (softmax_labels[hot],)] = rng.uniform(0.1, 1.0, size=hot.sum())
    return {
        "x": x,
        "labels": labels,
        "softmax_labels": softmax_labels.astype("int32"),
        "sample_weight": sample_weight,
        "quality": quality,
    }


# -- models -----------------------------------------------------------------
def build(strategy):
    """Four (model, loss, optimizer) triples created under `strategy.scope()`."""
    import keras

    import keras_eql

    triples = []
    # The losses' statistics are variables: create them under the scope too.
    with strategy.scope():
        losses = [
            keras_eql.SigmoidEQL(num_classes=NUM_CLASSES, objectness=True),
            keras_eql.SoftmaxEQL(num_classes=NUM_CLASSES),
            keras_eql.EqualizedFocalLoss(num_classes=NUM_CLASSES, normalize_by_positives=True,
                                         reduction="sum"),
            keras_eql.EqualizedQualityFocalLoss(num_classes=NUM_CLASSES),
        ]
        for index, loss in enumerate(losses):
            keras.utils.set_random_seed(100 + index)
            width = NUM_CLASSES + (1 if index == 0 else 0)
            model = keras.Sequential([
                keras.Input((FEATURES,)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(width),
            ])
            optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
            optimizer.build(model.trainable_variables)
            triples.append((model, loss, optimizer))
    return triples


def _targets(index, batch):
    """`(y_true, sample_weight)` of model `index` in a batch."""
    if index == 0:
        return batch["labels"], None
    if index == 1:
        return batch["softmax_labels"], batch["sample_weight"]
    if index == 2:
        return batch["labels"], None
    return batch["quality"], None


# -- training ----------------------------------------------------------------
def train(strategy, *, steps, worker_index, num_workers, checkpoint_dir=None,
          checkpoint_every=2, crash_after_step=None, log=print):
    """Train for `steps` global steps (resuming from `checkpoint_dir`); returns a dict."""
    import numpy as np
    import tensorflow as tf

    data = make_data(steps)
    triples = build(strategy)
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
    tracked = {"global_step": global_step}
    for index, (model, loss, optimizer) in enumerate(triples):
        tracked.update({f"model{index}": model, f"optimizer{index}": optimizer,
                        f"loss{index}": loss})
    checkpoint = tf.train.Checkpoint(**tracked)
    resumed_from = 0
    manager = None
    if checkpoint_dir:
        latest = tf.train.latest_checkpoint(checkpoint_dir)
        if latest:
            checkpoint.restore(latest).assert_existing_objects_matched()
            resumed_from = int(global_step.numpy())
            log(f"worker {worker_index}: resumed from {latest} at step {resumed_from}")
        # Only the chief writes the real checkpoint; every worker must save
        # (collective-safe), the others into a scratch directory.
        directory = checkpoint_dir if worker_index == 0 else tempfile.mkdtemp(
            prefix=f"worker{worker_index}_ckpt_")
        manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=2)

    def dataset_fn(context):
        per_replica = context.get_per_replica_batch_size(GLOBAL_BATCH)
        start = context.input_pipeline_id * per_replica
        part = {key: value[:, start:start + per_replica] for key, value in data.items()}
        dataset = tf.data.Dataset.from_tensor_slices(part)
        return dataset.skip(resumed_from)

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))

    @tf.function
    def train_step(batch):
        def replica_fn(batch):
            for index, (model, loss, optimizer) in enumerate(triples):
                y_true, sample_weight = _targets(index, batch)
                with tf.GradientTape() as tape:
                    logits = model(batch["x"], training=True)
                    # Keras already divides mean-type reductions by the
                    # number of replicas; do not divide again.
                    value = loss(y_true, logits, sample_weight)
                gradients = tape.gradient(value, model.trainable_variables)
                optimizer.apply_gradients(zip(gradients, model.trainable_variables))

        strategy.run(replica_fn, args=(batch,))
        global_step.assign_add(1)

    for step in range(resumed_from, steps):
        train_step(next(iterator))
        done = step + 1
        if manager is not None and done % checkpoint_every == 0:
            manager.save(checkpoint_number=done)
        log(f"worker {worker_index}: step {done}/{steps}")
        if crash_after_step is not None and done == crash_after_step:
            log(f"worker {worker_index}: simulated crash (SIGKILL) after step {done}")
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    result = {"worker": worker_index, "num_workers": num_workers,
              "replicas_in_sync": strategy.num_replicas_in_sync,
              "resumed_from": resumed_from, "steps": steps, "losses": {}}
    for index, (model, loss, optimizer) in enumerate(triples):
        statistics = loss.gradient_statistics()
        result["losses"][LOSS_NAMES[index]] = {
            "positive": statistics["positive"].tolist(),
            "negative": statistics["negative"].tolist(),
            "ratio": statistics["ratio"].tolist(),
            "steps": float(loss.statistics.steps.numpy()),
            "variable_type": type(loss.statistics.positive).__name__,
            "weights": [np.asarray(w).ravel().tolist() for w in model.get_weights()],
        }
    return result


def run_process(args):
    """Worker (TF_CONFIG set) or single-process entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    # Two workers share the machine's cores: keep each to one thread.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    if args.single:
        strategy, index, count = tf.distribute.get_strategy(), 0, 1
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        config = json.loads(os.environ["TF_CONFIG"])
        index, count = config["task"]["index"], len(config["cluster"]["worker"])
    crash = args.crash_after_step if index == args.crash_worker else None
    result = train(strategy, steps=args.steps, worker_index=index, num_workers=count,
                   checkpoint_dir=args.checkpoint_dir, checkpoint_every=args.checkpoint_every,
                   crash_after_step=crash, log=lambda text: print(text, flush=True))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle)
    if args.single:
        write_output(args, {"single": result})
    for name, values in result["losses"].items():
        print(f"worker {index}: {name}: steps={values['steps']:.0f} "
              f"positive={[round(v, 4) for v in values['positive']]} "
              f"ratio={[round(v, 3) for v in values['ratio']]}")


def write_output(args, results):
    """Write `{"args", "results"}` as JSON to `--output` (nothing when it is None)."""
    if args.output is None:
        return
    directory = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(directory, exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump({"args": vars(args), "results": results}, handle, indent=2)
    print(f"Wrote {args.output}")


# -- launcher -------------------------------------------------------------------
def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(worker_args, *, num_workers=2, timeout=180.0, grace=10.0, python=None, env=None):
    """Start `num_workers` local workers and wait for them (bounded).

    Args:
        worker_args: a function `index -> list of extra arguments`.
        timeout: seconds for the whole run; then every worker is killed.
        grace: once a worker has failed, seconds the others get to exit
            before they are killed (they block in collectives otherwise).

    Returns:
        A list of `(returncode, output)`, one per worker. Every worker's
        process group is killed before this returns.
    """
    ports = [free_port() for _ in range(num_workers)]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    procs, logs = [], []
    try:
        for index in range(num_workers):
            worker_env = dict(os.environ if env is None else env)
            worker_env["TF_CONFIG"] = json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}})
            log = tempfile.TemporaryFile(mode="w+")
            logs.append(log)
            procs.append(subprocess.Popen(
                [python or sys.executable, os.path.abspath(__file__), "--worker"]
                + list(worker_args(index)),
                env=worker_env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        deadline = time.monotonic() + timeout
        failed_at = None
        while time.monotonic() < deadline:
            codes = [proc.poll() for proc in procs]
            if all(code is not None for code in codes):
                break
            if failed_at is None and any(code not in (None, 0) for code in codes):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > grace:
                break
            time.sleep(0.2)
    finally:
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    return [(proc.returncode, output) for proc, output in zip(procs, outputs)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help="run as one worker (TF_CONFIG set)")
    parser.add_argument("--single", action="store_true", help="one process, same global batches")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--checkpoint-dir")
    parser.add_argument("--checkpoint-every", type=int, default=2)
    parser.add_argument("--crash-worker", type=int, default=None)
    parser.add_argument("--crash-after-step", type=int, default=None)
    parser.add_argument("--out", help="JSON results (launcher: a prefix, one file per worker)")
    parser.add_argument("--output", default=None,
                        help=f"every worker's results as one JSON file (default without --out: "
                             f"{DEFAULT_OUTPUT}, ignored by git)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE_STEPS} steps (the tests run this)")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--grace", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps = SMOKE_STEPS
    if args.output is None and args.out is None:
        args.output = DEFAULT_OUTPUT
    if args.worker or args.single:
        run_process(args)
        return 0
    # The workers write their results here; the launcher gathers them into --output.
    with tempfile.TemporaryDirectory(prefix="multiworker_ctl_") as scratch:
        return launch_and_gather(args, args.out or os.path.join(scratch, "result"))


def launch_and_gather(args, out):
    """Run the workers (their JSON at `out.worker<i>.json`), then write `--output`; the exit code."""

    def worker_args(index):
        extra = ["--steps", str(args.steps), "--checkpoint-every", str(args.checkpoint_every)]
        if args.checkpoint_dir:
            extra += ["--checkpoint-dir", args.checkpoint_dir]
        if args.crash_worker is not None and args.crash_after_step is not None:
            extra += ["--crash-worker", str(args.crash_worker),
                      "--crash-after-step", str(args.crash_after_step)]
        return extra + ["--out", f"{out}.worker{index}.json"]

    results = launch(worker_args, num_workers=args.workers, timeout=args.timeout,
                     grace=args.grace)
    for index, (code, output) in enumerate(results):
        print(f"--- worker {index} exited with {code}")
        print(output.rstrip())
    if not all(code == 0 for code, _ in results):
        return 1
    gathered = {}
    for index in range(args.workers):
        with open(f"{out}.worker{index}.json") as handle:
            gathered[f"worker{index}"] = json.load(handle)
    write_output(args, gathered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
