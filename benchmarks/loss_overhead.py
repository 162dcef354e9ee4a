"""Overhead of each keras_eql loss over its plain Keras counterpart.

Times forward + backward w.r.t. the logits (and the statistics update, which
runs in the backward pass) of every keras_eql loss and of
`BinaryCrossentropy`, `BinaryFocalCrossentropy` and
`SparseCategoricalCrossentropy`, on the same logits, in eager mode, under
`tf.function` and with `jit_compile=True`. Variants are timed round-robin
and summarised by medians; every ratio compares two medians of the same run.
Peak memory per call is measured afterwards (see `_timing.peak_memory`).

Variants of a keras_eql loss, named `Loss[implementation,labels]`:

* implementation `fused`: the `keras_eql` class as installed (its row loss
  is `keras_eql._fused`: analytic gradient and statistics' sums in one
  backward pass); `autodiff`: the same class with the row loss written from
  the public pieces, autodiff of `keras_eql.functional` plus
  `GradientStatistics.capture` (`benchmarks/_autodiff_losses.py`);
* labels `sparse` (class ids, background = C) or `dense` (the one-hot the
  Keras counterparts get; one-hot times a quality score for EQFL), or
  `one_hot`: the same dense targets with the loss built with
  `targets="one_hot"` (fused only), compared with the same loss on `sparse`
  ids (target `ONE_HOT_TARGET`);
* `no-stats`: `update_statistics=False`, to isolate the statistics' cost.

Under `KERAS_BACKEND=jax` (no TensorFlow needed) the same comparison runs
with `jax.value_and_grad`, eagerly and under `jax.jit` (modes `eager`,
`jit`), against the same Keras losses on JAX: the keras_eql losses through
`loss.stateless_call`, their statistics carried from call to call as a
training step carries them. There the `fused` implementation is what the
classes run under JAX (the analytic forward-pass statistics of
`keras_eql._forward`); `autodiff` is TensorFlow-only.

Examples:
    python benchmarks/loss_overhead.py --smoke
    KERAS_BACKEND=jax python benchmarks/loss_overhead.py --shapes two_stage --modes jit
    python benchmarks/loss_overhead.py --shapes two_stage --modes jit --repeats 9 \\
        --json two_stage.json
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

import keras_eql  # noqa: E402

if _timing.BACKEND == "tensorflow":
    import tensorflow as tf  # noqa: E402
    from _autodiff_losses import AUTODIFF  # noqa: E402
else:
    import jax  # noqa: E402

    AUTODIFF = {}  # TensorFlow-only: GradientStatistics.capture, keras_eql.functional
# Modes and implementations each backend runs.
MODES = {"tensorflow": ("eager", "function", "jit"), "jax": ("eager", "jit")}
IMPLEMENTATIONS = {"tensorflow": ("fused", "autodiff"), "jax": ("fused",)}

Shape = collections.namedtuple("Shape", "dims foreground objectness")

SHAPES = {
    # Two-stage LVIS box head: 8192 RoIs, 1203 classes + objectness.
    "two_stage": Shape((8192, 1204), 0.25, True),
    # Dense one-stage head: 2 images x 20000 anchors x 1203 classes.
    "one_stage": Shape((2, 20000, 1203), 0.01, False),
    # ImageNet-sized classification batch.
    "classification": Shape((256, 1000), 1.0, False),
    # ADE20K-sized segmentation logits (per-pixel rows).
    "segmentation": Shape((4, 128, 128, 150), 1.0, False),
}
SMOKE_SHAPES = {
    "two_stage": Shape((64, 13), 0.25, True),
    "segmentation": Shape((2, 4, 4, 9), 1.0, False),
}
SMOKE_DEFAULT = "two_stage"

LOSSES = {
    "sigmoid_eql": (keras_eql.SigmoidEQL, ["BinaryCrossentropy"]),
    "efl": (keras_eql.EqualizedFocalLoss, ["BinaryCrossentropy", "BinaryFocalCrossentropy(alpha)"]),
    "eqfl": (keras_eql.EqualizedQualityFocalLoss, ["BinaryCrossentropy", "BinaryFocalCrossentropy"]),
    "softmax_eql": (keras_eql.SoftmaxEQL, ["SparseCategoricalCrossentropy"]),
}

# Target ratios of issue #6 (XLA, same shape, same run).
TARGETS = {
    ("sigmoid_eql", "BinaryCrossentropy"): 1.5,
    ("efl", "BinaryCrossentropy"): 2.0,
    ("efl", "BinaryFocalCrossentropy(alpha)"): 1.3,
    ("eqfl", "BinaryCrossentropy"): 2.0,
    ("eqfl", "BinaryFocalCrossentropy"): 1.3,
    ("softmax_eql", "SparseCategoricalCrossentropy"): 1.3,
}
# Issue #15: the statistics' share, and dense one-hot targets against class ids.
CAPTURE_TARGET = 0.15
ONE_HOT_TARGET = 1.1
EXTRA_BUFFERS_TARGET = 2.0


def counterpart(name):
    """A fresh plain Keras loss by its benchmark name."""
    if name == "BinaryCrossentropy":
        return keras.losses.BinaryCrossentropy(from_logits=True)
    if name == "BinaryFocalCrossentropy(alpha)":
        return keras.losses.BinaryFocalCrossentropy(
            from_logits=True, apply_class_balancing=True, alpha=0.25, gamma=2.0)
    if name == "BinaryFocalCrossentropy":
        return keras.losses.BinaryFocalCrossentropy(from_logits=True, gamma=2.0)
    if name == "SparseCategoricalCrossentropy":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    raise ValueError(name)


class Batches:
    """Logits and a new batch of targets for every call, in each layout.

    Every timed call gets targets it has not seen (labels drawn anew for each
    call index, built before the clock starts), as in training, so a loss
    whose compiled program depends on the label values pays for that. The
    logits stay the same.

    Foreground rows get a class in `[0, C)`, `C = K - 1` on a shape with
    objectness, else `K`; background rows the background id of the loss:
    `K - 1` (the objectness positive) in the layouts ending in `_objectness`
    (Sigmoid-EQL with objectness), `K` (an all-negative row) otherwise.
    """

    def __init__(self, shape, dtype, seed=0, reuse=False):
        self.shape, self.seed, self.reuse = shape, seed, reuse
        logits = np.random.default_rng(seed).normal(0.0, 2.0, size=shape.dims)
        self.logits = ops.cast(ops.convert_to_tensor(logits.astype(np.float32)), dtype)
        self._cache = {}

    def get(self, layout, index):
        """Targets of call `index` in `layout` (one call index cached at a time)."""
        index = 0 if self.reuse else index
        if (layout, index) not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[1] == index}
            self._cache[(layout, index)] = self._build(layout, index)
        return self._cache[(layout, index)]

    def _build(self, layout, index):
        rng = np.random.default_rng([self.seed, index])
        width = self.shape.dims[-1]
        rows = self.shape.dims[:-1]
        if layout == "categorical":
            return ops.convert_to_tensor(rng.integers(0, width, size=rows).astype(np.int32))
        foreground = rng.random(rows) < self.shape.foreground
        classes = rng.integers(0, width - 1 if self.shape.objectness else width, size=rows)
        quality = rng.uniform(0.3, 0.95, size=rows + (1,)).astype(np.float32)
        kind, _, objectness = layout.partition("_")
        labels = ops.convert_to_tensor(np.where(foreground, classes, width - 1 if objectness else width)
                                       .astype(np.int32))
        if kind == "sparse":
            return labels
        one_hot = ops.one_hot(labels, width + 1)[..., :width]
        return one_hot if kind == "dense" else one_hot * quality


def make_step(loss, mode):
    """Forward + backward w.r.t. the logits; returns the loss and the gradient."""
    if _timing.BACKEND == "jax":
        return _jax_step(loss, mode)

    def step(targets, logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = loss(targets, logits)
        return value, tape.gradient(value, logits)

    if mode == "eager":
        return step
    return tf.function(step, jit_compile=(mode == "jit"))


def _jax_step(loss, mode):
    """`make_step` under JAX: `value_and_grad`, jitted in mode `jit`.

    A keras_eql loss runs through `stateless_call`, its statistics passed in
    and the updated ones kept for the next call (what `fit` does with them).
    """
    statistics = getattr(loss, "statistics", None)
    if statistics is None:  # a Keras loss: stateless
        def plain(targets, logits):
            return jax.value_and_grad(lambda z: loss(targets, z))(logits)

        return jax.jit(plain) if mode == "jit" else plain

    def stateful(state, targets, logits):
        (value, state), gradient = jax.value_and_grad(
            lambda z: loss.stateless_call(state, targets, z), has_aux=True)(logits)
        return value, gradient, state

    compiled = jax.jit(stateful) if mode == "jit" else stateful
    carried = [[variable.value for variable in statistics.variables]]

    def step(targets, logits):
        value, gradient, carried[0] = compiled(carried[0], targets, logits)
        return value, gradient

    return step


def variants(args, shape):
    """dict name -> (loss object, targets layout, metadata) for one shape."""
    out = {}
    needed = []
    for key in args.losses:
        for name in LOSSES[key][1]:
            if name not in needed:
                needed.append(name)
    for name in needed:
        # The one-hot with the objectness column where the head has one.
        suffix = "_objectness" if shape.objectness else ""
        targets = {"BinaryFocalCrossentropy": "quality" + suffix,
                   "SparseCategoricalCrossentropy": "categorical"}.get(name, "dense" + suffix)
        out[name] = (counterpart(name), targets, {"loss": name, "counterpart": True})
    for key in args.losses:
        cls = LOSSES[key][0]
        softmax = key == "softmax_eql"
        objectness = key == "sigmoid_eql" and shape.objectness
        width = shape.dims[-1]
        config = {"num_classes": width - 1 if objectness else width}
        if key == "sigmoid_eql":
            config["objectness"] = objectness
        suffix = "_objectness" if objectness else ""
        for implementation in args.implementations:
            loss_cls = cls if implementation == "fused" else AUTODIFF[cls]
            for labels in (["sparse"] if softmax else args.labels):
                if labels == "one_hot" and implementation != "fused":
                    continue
                route = {"targets": "one_hot"} if labels == "one_hot" else {}
                if softmax:
                    targets = "categorical"
                elif labels == "sparse":
                    targets = "sparse" + suffix
                else:
                    targets = ("quality" if key == "eqfl" else "dense") + suffix
                for statistics in ([True, False] if args.no_stats else [True]):
                    name = f"{cls.__name__}[{implementation},{labels}" + (
                        "]" if statistics else ",no-stats]")
                    loss = loss_cls(update_statistics=statistics, **config, **route)
                    out[name] = (loss, targets, {
                        "loss": key, "class": cls.__name__, "implementation": implementation,
                        "labels": labels, "statistics": statistics})
    return out


def run_shape(args, shape_name, shape):
    batches = Batches(shape, args.dtype, reuse=args.reuse_targets)
    table = variants(args, shape)
    results = []
    for mode in args.modes:
        steps = {name: make_step(loss, mode) for name, (loss, _, _) in table.items()}

        def arguments(name, index):
            return batches.get(table[name][1], index), batches.logits

        log(f"[{shape_name} {mode}] {len(steps)} variants, {args.repeats} rounds")
        wall, cpu = _timing.interleaved(steps, arguments, repeats=args.repeats,
                                        warmup=args.warmup, progress=log)
        for name, (_, _, meta) in table.items():
            results.append(dict(meta, shape=shape_name, dims=list(shape.dims), mode=mode,
                                variant=name, times_ms=[1e3 * t for t in wall[name]],
                                cpu_ms=[1e3 * t for t in cpu[name]],
                                median_ms=1e3 * _timing.median(wall[name]),
                                median_cpu_ms=1e3 * _timing.median(cpu[name])))
        if args.memory:
            memory_pass(steps, arguments, results, shape_name, mode)
    return results


def memory_pass(steps, arguments, results, shape_name, mode):
    """Peak extra bytes of one call per variant (median of three, on seen targets)."""
    for row in results:
        if row["shape"] == shape_name and row["mode"] == mode:
            name = row["variant"]
            peaks = [_timing.peak_memory(steps[name], *arguments(name, 0)) for _ in range(3)]
            row["peak_bytes"] = None if None in peaks else float(np.median(peaks))


def log(message):
    print(message, file=sys.stderr, flush=True)


def _ratio_row(r, other, against, target):
    return {"shape": r["shape"], "mode": r["mode"], "variant": r["variant"], "against": against,
            "ratio": r["median_ms"] / other["median_ms"],
            "cpu_ratio": r["median_cpu_ms"] / other["median_cpu_ms"], "target": target}


def summarise(results):
    """Ratio rows: each keras_eql variant against its counterparts and its no-stats twin."""
    by_key = {(r["shape"], r["mode"], r["variant"]): r for r in results}
    rows = []
    for r in results:
        if r.get("counterpart"):
            continue
        key = (r["shape"], r["mode"])
        buffer_bytes = 4.0 * np.prod(r["dims"])
        for name in LOSSES[r["loss"]][1]:
            other = by_key.get(key + (name,))
            if other is None:
                continue
            row = _ratio_row(r, other, name, TARGETS.get((r["loss"], name)))
            if r.get("peak_bytes") is not None and other.get("peak_bytes") is not None:
                row["extra_buffers"] = (r["peak_bytes"] - other["peak_bytes"]) / buffer_bytes
            rows.append(row)
        if r["statistics"]:
            twin = by_key.get(key + (r["variant"][:-1] + ",no-stats]",))
            if twin is not None:
                rows.append(_ratio_row(r, twin, "no statistics", 1.0 + CAPTURE_TARGET))
        if r["labels"] == "one_hot":
            ids = by_key.get(key + (r["variant"].replace(",one_hot", ",sparse"),))
            if ids is not None:
                rows.append(_ratio_row(r, ids, "sparse ids", ONE_HOT_TARGET))
    return rows


def verdict(ratio, target, mode):
    if target is None or mode != "jit":
        return "    "
    return "PASS" if ratio <= target else "FAIL"


def print_report(results, ratios):
    print("\n## medians per call, ms (wall clock | process CPU time)")
    for r in results:
        peak = r.get("peak_bytes")
        memory = "" if peak is None else f"  peak +{peak / 2**20:8.1f} MiB"
        print(f"{r['shape']:14s} {r['mode']:8s} {r['variant']:52s} {r['median_ms']:9.2f} |"
              f" {r['median_cpu_ms']:9.2f}{memory}")
    print("\n## ratios of medians, same run (wall | CPU); verdicts for jit only")
    for row in ratios:
        buffers = row.get("extra_buffers")
        extra = ""
        if buffers is not None:
            extra = f"  extra (N,C) f32 buffers {buffers:+5.2f} " + verdict(
                buffers, EXTRA_BUFFERS_TARGET, row["mode"])
        target = "" if row["target"] is None else f"<= {row['target']:.2f}"
        print(f"{row['shape']:14s} {row['mode']:8s} {row['variant']:52s} vs {row['against']:30s}"
              f" {row['ratio']:5.2f} {verdict(row['ratio'], row['target'], row['mode'])} |"
              f" {row['cpu_ratio']:5.2f} {verdict(row['cpu_ratio'], row['target'], row['mode'])}"
              f" {target:8s}{extra}")


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", help="comma-separated: " + ",".join(SHAPES) + " (default: all)")
    parser.add_argument("--losses", default=",".join(LOSSES), help="comma-separated: " + ",".join(LOSSES))
    parser.add_argument("--no-stats", dest="no_stats", action="store_true", default=None,
                        help="also time update_statistics=False (default, not with --smoke)")
    parser.add_argument("--skip-no-stats", dest="no_stats", action="store_false")
    parser.add_argument("--dtype", default="float32", help="logits dtype: float32, bfloat16, float16")
    parser.add_argument("--no-memory", dest="memory", action="store_false")
    _timing.add_run_arguments(parser, modes=",".join(MODES[_timing.BACKEND]), repeats=7, warmup=2,
                              smoke_help="CI: a tiny shape, one round, no no-stats twins",
                              implementations=",".join(IMPLEMENTATIONS[_timing.BACKEND]))
    args = parser.parse_args(argv)
    if args.shapes is None:
        args.shapes = SMOKE_DEFAULT if args.smoke else ",".join(SHAPES)
    _timing.finish_arguments(args, ("shapes", "losses", "modes", "labels", "implementations"))
    if args.no_stats is None:
        args.no_stats = not args.smoke
    unknown = set(args.shapes) - set(SMOKE_SHAPES if args.smoke else SHAPES)
    if unknown:
        parser.error(f"unknown shapes {sorted(unknown)}")
    _timing.check_backend_choices(parser, args, MODES, IMPLEMENTATIONS)
    return args


def main(argv=None):
    args = parse(argv)
    shapes = SMOKE_SHAPES if args.smoke else SHAPES
    results = []
    for name in args.shapes:
        results += run_shape(args, name, shapes[name])
    return _timing.report(args, results, summarise, print_report)


if __name__ == "__main__":
    sys.exit(main())
