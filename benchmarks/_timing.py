"""Timing and memory helpers shared by the benchmark scripts.

Nothing here assumes a CPU: on a GPU host the same calls synchronise the
device before reading the clock and read the allocator's peak instead of the
process's resident set.

* `interleaved` times every step round-robin (rotating the order each round)
  so that load drift on a shared machine hits all variants alike, and
  records both the wall-clock time and the process CPU time of each call.
  Report medians. On a machine shared with other jobs the wall clock also
  measures waiting for a core; the CPU time (all threads of this process)
  measures the work done and is the steadier of the two there.
* `peak_memory` measures the peak extra memory of one call from TensorFlow's
  allocator statistics (`tf.config.experimental.get_memory_info`, on the GPU
  or on the CPU), falling back to the peak resident set on a CPU allocator
  without statistics.

Backends: TensorFlow, and JAX (`KERAS_BACKEND=jax`), where nothing here
imports TensorFlow. JAX dispatches asynchronously on every platform, so a
timed call waits for its own results (`jax.block_until_ready`). Peak memory
is not measured under JAX: its allocator cannot reset the peak between
calls on a GPU, and on a CPU XLA reuses memory it holds, so the resident
set's peak does not move (it reads 0 extra bytes, which would pass as a
measurement).
"""

import json
import os
import platform
import subprocess
import sys
import time

import keras
import numpy as np

BACKEND = keras.backend.backend()
if BACKEND == "tensorflow":
    import tensorflow as tf
elif BACKEND == "jax":
    import jax
else:
    raise SystemExit(f"the benchmarks run under KERAS_BACKEND=tensorflow or jax, not {BACKEND!r}.")


def gpus():
    """GPU devices, by name (empty on a CPU host)."""
    if BACKEND == "jax":
        return [str(device) for device in jax.devices() if device.platform == "gpu"]
    return [device.name for device in tf.config.list_logical_devices("GPU")]


def synchronize(result=None):
    """Wait until the queued work (JAX: that producing `result`) is done (TF: on GPU only)."""
    if BACKEND == "jax":
        if result is not None:
            jax.block_until_ready(result)
    elif gpus():
        tf.test.experimental.sync_devices()


def machine():
    """Where and with what a benchmark ran, for the JSON and the tables."""
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                     if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "gpus": gpus(),
        "python": platform.python_version(),
        "backend": BACKEND,
        "tensorflow": tf.__version__ if BACKEND == "tensorflow" else None,
        "jax": jax.__version__ if BACKEND == "jax" else None,
        "keras": keras.__version__,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
    }


def run_once(step, *args):
    """Call `step` and wait until its results exist."""
    result = step(*args)
    synchronize(result)
    return result


def interleaved(steps, arguments, *, repeats, warmup, progress=None):
    """Median-ready wall and CPU times of every step, measured round-robin.

    Args:
        steps: dict name -> callable.
        arguments: callable `(name, call_index) -> tuple` giving the call's
            arguments, built before the clock starts. Giving each call new
            data (e.g. a new batch of labels) exposes any cost that only a
            new value causes, such as XLA recompiling for it.
        repeats: timed rounds (each calls every step once).
        warmup: untimed calls per step first (tracing, XLA compilation).
        progress: optional callable on a status string.

    Returns:
        `(wall, cpu)`: dicts name -> list of seconds.
    """
    names = list(steps)
    for name in names:
        if progress:
            progress(f"warm-up {name}")
        for index in range(warmup):
            run_once(steps[name], *arguments(name, index))
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            args = arguments(name, warmup + round_index)
            start, start_cpu = time.perf_counter(), time.process_time()
            run_once(steps[name], *args)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            del args
        if progress:
            progress(f"round {round_index + 1}/{repeats}")
    return wall, cpu


class _BatchTimer:
    """Keras callback: wall and process CPU time of every training batch of a `fit`."""

    def __init__(self):
        import keras

        class Timer(keras.callbacks.Callback):
            def on_train_batch_begin(inner, batch, logs=None):
                inner.start = (time.perf_counter(), time.process_time())

            def on_train_batch_end(inner, batch, logs=None):
                synchronize(logs)
                wall, cpu = inner.start
                inner.times.append((time.perf_counter() - wall, time.process_time() - cpu))

        self.callback = Timer()
        self.callback.times = []


def interleaved_fit(models, data, *, batch_size, steps, repeats, warmup, progress=None):
    """Per-batch wall and CPU times of `model.fit`, the variants in rotating order.

    Each round calls `fit` once per model on `steps` new batches
    (`data(name, round) -> (x, y)`, built before the clock starts), one epoch,
    and times each batch with a callback (the step function, its input
    pipeline's `next` included, without `fit`'s own set-up). The first batch
    of every call is dropped: it pays for the call's iterator.

    Args:
        models: dict name -> compiled `keras.Model`.
        data: callable `(name, round_index) -> (x, y)` with `steps * batch_size` rows.
        batch_size, steps: batches per `fit` call.
        repeats: timed rounds; warmup: untimed rounds first (tracing, XLA).
        progress: optional callable on a status string.

    Returns:
        `(wall, cpu)`: dicts name -> list of seconds, `(steps - 1) * repeats` each.
    """
    names = list(models)
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for round_index in range(warmup + repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            x, y = data(name, round_index)
            timer = _BatchTimer()
            models[name].fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0,
                             callbacks=[timer.callback])
            if round_index >= warmup:
                times = timer.callback.times[1:]
                wall[name] += [t[0] for t in times]
                cpu[name] += [t[1] for t in times]
        if progress:
            progress(("warm-up " if round_index < warmup else "round ")
                     + f"{round_index + 1}/{warmup + repeats}")
    return wall, cpu


def median(values):
    return float(np.median(values))


def _status_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _allocator_peak(device, step, args):
    try:
        tf.config.experimental.reset_memory_stats(device)
        before = tf.config.experimental.get_memory_info(device)["current"]
        result = run_once(step, *args)
        peak = tf.config.experimental.get_memory_info(device)["peak"]
    except (ValueError, RuntimeError, tf.errors.OpError):
        return None
    del result
    return None if peak == 0 else peak - before


def _resident_peak(step, args):
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # reset the peak RSS to the current RSS
        before = _status_kib("VmRSS")
        run_once(step, *args)
        return (_status_kib("VmHWM") - before) * 1024
    except (OSError, KeyError):
        return None


def peak_memory(step, *args):
    """Peak bytes allocated by one call of `step` beyond what was live before.

    Returns None where the platform offers no measurement (under JAX).
    """
    if BACKEND != "tensorflow":
        return None
    device = "GPU:0" if gpus() else "CPU:0"
    peak = _allocator_peak(device, step, args)
    if peak is None and not gpus():
        peak = _resident_peak(step, args)
    return peak


def write_json(path, payload):
    with open(path, "w") as out:
        json.dump(payload, out, indent=1, default=float)


# -- command line shared by loss_overhead.py and train_step.py ---------------------


def add_run_arguments(parser, *, modes, repeats, warmup, smoke_help, implementations="fused,autodiff"):
    """The options both benchmark scripts take."""
    parser.add_argument("--modes", default=modes,
                        help="comma-separated: eager,function,jit (JAX: eager,jit)")
    parser.add_argument("--labels", default=None,
                        help="sigmoid losses' label layouts: sparse, dense, one_hot (dense targets, "
                             "targets='one_hot'); default all three, sparse,dense with --smoke")
    parser.add_argument("--implementations", default=implementations,
                        help="fused: the keras_eql classes; autodiff: benchmarks/_autodiff_losses.py "
                             "(TensorFlow only)")
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--reuse-targets", action="store_true",
                        help="give every call the same targets (hides recompilation per batch)")
    parser.add_argument("--json", help="write every time and ratio to this file")
    parser.add_argument("--smoke", action="store_true", help=smoke_help)


def finish_arguments(args, list_fields):
    """Comma-separated options as lists; `--smoke` calls every variant once."""
    if getattr(args, "labels", "") is None:
        args.labels = "sparse,dense" if args.smoke else "sparse,dense,one_hot"
    for field in list_fields:
        setattr(args, field, [v for v in getattr(args, field).split(",") if v])
    if args.smoke:  # every variant called once: it runs, its time means little
        args.repeats, args.warmup = 1, 0
    return args


def check_backend_choices(parser, args, modes, implementations):
    """`parser.error` for a mode or implementation this backend does not run.

    Args:
        parser: the script's parser.
        args: parsed by `finish_arguments`.
        modes, implementations: `{backend: names it runs}`.
    """
    for label, allowed in (("modes", modes[BACKEND]), ("implementations", implementations[BACKEND])):
        refused = [value for value in getattr(args, label) if value not in allowed]
        if refused:
            parser.error(f"--{label} {','.join(refused)}: under KERAS_BACKEND={BACKEND} this "
                         f"benchmark runs {','.join(allowed)}.")


def report(args, results, summarise, print_report):
    """Print the ratios of `results` and write them with `--json`."""
    ratios = summarise(results)
    print_report(results, ratios)
    if args.json:
        write_json(args.json, {"machine": machine(), "arguments": vars(args),
                               "results": results, "ratios": ratios})
    return 0
