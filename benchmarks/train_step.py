"""Full training step of a small model with each keras_eql loss vs its Keras counterpart.

The overhead a user actually feels: a training step (forward, loss,
backward, statistics update, optimizer step) of the same model, data and
optimizer, compiled with `jit_compile=True` (or as a plain `tf.function`, or
eagerly), timed round-robin, medians compared within one run, through

* `--api train_on_batch`: one `model.train_on_batch` call per timed step;
* `--api fit`: `model.fit` on `--steps-per-fit` batches per call, each batch
  timed by a callback (the first of each call dropped), as users train.

Every step gets new features and new labels (a constant batch would stay in
the CPU's cache). Models:

* `box_head`: a two-stage detector's box head, 512 RoIs x 1024 features ->
  Dense(1024, relu) -> Dense(1204) (1203 classes + objectness for
  Sigmoid-EQL); sigmoid losses.
* `classifier`: a linear classifier on pooled features, 256 x 2048 ->
  Dense(1000); Softmax-EQL.

Under `KERAS_BACKEND=jax` (no TensorFlow needed) the same models train with
Keras's JAX trainer, compiled with `jit_compile=True` (mode `jit`) or run
eagerly (mode `eager`), after `keras_eql.attach(model)`; the `fused`
implementation only (`autodiff` is TensorFlow-only).

Examples:
    python benchmarks/train_step.py --smoke
    python benchmarks/train_step.py --modes jit --repeats 15 --json train.json
    python benchmarks/train_step.py --api fit --repeats 5 --steps-per-fit 6
    KERAS_BACKEND=jax python benchmarks/train_step.py --repeats 15
"""

import argparse
import collections
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402
from loss_overhead import (AUTODIFF, IMPLEMENTATIONS, LOSSES, MODES, Batches, Shape,  # noqa: E402
                           counterpart)

import keras_eql  # noqa: E402

Model = collections.namedtuple("Model", "rows features hidden width objectness losses")

MODELS = {
    "box_head": Model(512, 1024, 1024, 1204, True, ("sigmoid_eql", "efl", "eqfl")),
    "classifier": Model(256, 2048, None, 1000, False, ("softmax_eql",)),
}
SMOKE_MODELS = {
    "box_head": Model(32, 16, 16, 13, True, ("sigmoid_eql", "efl", "eqfl")),
    "classifier": Model(16, 16, None, 10, False, ("softmax_eql",)),
}
STEP_TARGET = 1.05
# Issue #15: what a user's `fit` feels.
FIT_TARGET = 1.03


def build_model(spec, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((spec.features,))
    hidden = inputs
    if spec.hidden:
        hidden = keras.layers.Dense(spec.hidden, activation="relu")(hidden)
    return keras.Model(inputs, keras.layers.Dense(spec.width)(hidden))


def variants(args, spec):
    """dict name -> (loss, targets key, metadata)."""
    out = {}
    for key in spec.losses:
        cls, counterparts = LOSSES[key]
        for name in counterparts:
            target = {"BinaryFocalCrossentropy": "quality",
                      "SparseCategoricalCrossentropy": "categorical"}.get(name, "dense")
            if target != "categorical" and spec.objectness:
                target += "_objectness"
            out.setdefault(name, (lambda name=name: counterpart(name), target,
                                  {"loss": name, "counterpart": True}))
        objectness = key == "sigmoid_eql" and spec.objectness
        config = {"num_classes": spec.width - 1 if objectness else spec.width}
        if key == "sigmoid_eql":
            config["objectness"] = objectness
        suffix = "_objectness" if objectness else ""
        for implementation in args.implementations:
            loss_cls = cls if implementation == "fused" else AUTODIFF[cls]
            for labels in (["sparse"] if key == "softmax_eql" else args.labels):
                if labels == "one_hot" and implementation != "fused":
                    continue
                route = {"targets": "one_hot"} if labels == "one_hot" else {}
                if key == "softmax_eql":
                    target = "categorical"
                elif labels == "sparse":
                    target = "sparse" + suffix
                else:
                    target = ("quality" if key == "eqfl" else "dense") + suffix
                name = f"{cls.__name__}[{implementation},{labels}]"
                out[name] = (lambda c=loss_cls, k=dict(config, **route): c(**k), target,
                             {"loss": key, "class": cls.__name__,
                              "implementation": implementation, "labels": labels})
    return out


class Features:
    """New features for every step (one call index cached at a time)."""

    def __init__(self, spec, seed=1):
        self.spec, self.seed, self._cached = spec, seed, (None, None)

    def get(self, index, rows=None):
        rows = self.spec.rows if rows is None else rows
        if self._cached[0] != (index, rows):
            rng = np.random.default_rng([self.seed, index])
            self._cached = ((index, rows), ops.convert_to_tensor(
                rng.normal(size=(rows, self.spec.features)).astype(np.float32)))
        return self._cached[1]


def compiled_model(spec, loss, mode):
    model = build_model(spec)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=loss,
                  jit_compile=(mode == "jit"), run_eagerly=(mode == "eager"))
    return keras_eql.attach(model)  # JAX: the statistics become model state; a no-op on TF


def run_model(args, model_name, spec):
    # New features and labels for every step (see loss_overhead.Batches).
    batches = Batches(Shape((spec.rows, spec.width), 0.25 if spec.objectness else 1.0,
                            spec.objectness), "float32", reuse=args.reuse_targets)
    features = Features(spec)
    table = variants(args, spec)
    results = []
    for api in args.api:
        for mode in args.modes:
            models = {name: compiled_model(spec, make_loss(), mode)
                      for name, (make_loss, _, _) in table.items()}
            log(f"[{model_name} {api} {mode}] {len(models)} variants, {args.repeats} rounds")
            if api == "train_on_batch":
                def arguments(name, index):
                    index = 0 if args.reuse_targets else index
                    return features.get(index), batches.get(table[name][1], index)

                steps = {name: model.train_on_batch for name, model in models.items()}
                wall, cpu = _timing.interleaved(steps, arguments, repeats=args.repeats,
                                                warmup=args.warmup, progress=log)
            else:
                per_fit = args.steps_per_fit

                def data(name, round_index):
                    first = 0 if args.reuse_targets else round_index * per_fit
                    labels = [batches.get(table[name][1], first + k) for k in range(per_fit)]
                    return (features.get(first, spec.rows * per_fit),
                            ops.concatenate(labels, 0))

                wall, cpu = _timing.interleaved_fit(
                    models, data, batch_size=spec.rows, steps=per_fit, repeats=args.repeats,
                    warmup=max(1, min(args.warmup, 2)), progress=log)
            for name, (_, _, meta) in table.items():
                results.append(dict(meta, model=model_name, mode=mode, api=api, variant=name,
                                    times_ms=[1e3 * t for t in wall[name]],
                                    cpu_ms=[1e3 * t for t in cpu[name]],
                                    median_ms=1e3 * _timing.median(wall[name]),
                                    median_cpu_ms=1e3 * _timing.median(cpu[name])))
    return results


def summarise(results):
    by_key = {(r["model"], r["mode"], r["api"], r["variant"]): r for r in results}
    rows = []
    for r in results:
        if r.get("counterpart"):
            continue
        target = FIT_TARGET if r["api"] == "fit" else STEP_TARGET
        for name in LOSSES[r["loss"]][1]:
            other = by_key.get((r["model"], r["mode"], r["api"], name))
            if other is not None:
                rows.append({"model": r["model"], "mode": r["mode"], "api": r["api"],
                             "variant": r["variant"], "against": name,
                             "ratio": r["median_ms"] / other["median_ms"],
                             "cpu_ratio": r["median_cpu_ms"] / other["median_cpu_ms"],
                             "target": target})
    return rows


def log(message):
    print(message, file=sys.stderr, flush=True)


def verdict(ratio, mode, target):
    return "    " if mode != "jit" else ("PASS" if ratio <= target else "FAIL")


def print_report(results, ratios):
    print("\n## medians per training step, ms (wall clock | process CPU time)")
    for r in results:
        print(f"{r['model']:11s} {r['api']:14s} {r['mode']:8s} {r['variant']:42s}"
              f" {r['median_ms']:9.2f} | {r['median_cpu_ms']:9.2f}")
    print(f"\n## ratios of medians, same run (wall | CPU); target <= {STEP_TARGET} "
          f"(train_on_batch), <= {FIT_TARGET} (fit), jit only")
    for row in ratios:
        print(f"{row['model']:11s} {row['api']:14s} {row['mode']:8s} {row['variant']:42s} vs "
              f"{row['against']:30s} {row['ratio']:6.3f} "
              f"{verdict(row['ratio'], row['mode'], row['target'])} | {row['cpu_ratio']:6.3f} "
              f"{verdict(row['cpu_ratio'], row['mode'], row['target'])}")


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ",".join(MODELS))
    parser.add_argument("--api", default=None,
                        help="comma-separated: train_on_batch, fit (model.fit, batches timed by a "
                             "callback); default both, train_on_batch with --smoke")
    parser.add_argument("--steps-per-fit", type=int, default=5,
                        help="batches per model.fit call (the first of each is not timed)")
    _timing.add_run_arguments(parser, modes="jit", repeats=11, warmup=3,
                              smoke_help="tiny models, one round (CI)",
                              implementations=",".join(IMPLEMENTATIONS[_timing.BACKEND]))
    args = parser.parse_args(argv)
    if args.api is None:
        args.api = "train_on_batch" if args.smoke else "train_on_batch,fit"
    _timing.finish_arguments(args, ("models", "api", "modes", "labels", "implementations"))
    if args.smoke:
        args.steps_per_fit = 2
    _timing.check_backend_choices(parser, args, MODES, IMPLEMENTATIONS)
    return args


def main(argv=None):
    args = parse(argv)
    models = SMOKE_MODELS if args.smoke else MODELS
    results = []
    for name in args.models:
        results += run_model(args, name, models[name])
    return _timing.report(args, results, summarise, print_report)


if __name__ == "__main__":
    sys.exit(main())
