"""Count the (N, C) memory passes of each loss's XLA program, from its optimized HLO.

On a memory-bound device (a GPU) a loss's forward + backward costs about one
unit per full read or write of an `(N, C)` float32 array, so the count
predicts the ratios we cannot time here. For every keras_eql loss (label
layouts `sparse`, `dense`, `one_hot`; statistics on and off) and its Keras
counterpart this compiles `loss(targets, logits)` and its gradient w.r.t. the
logits with `jit_compile=True` at one shape, and reads the optimized HLO's
entry computation:

* writes: instructions (fusions, dots, custom calls, copies) whose result is,
  or holds, an array of `N x C` elements: each is one materialised buffer;
* reads: `(N, C)`-sized operands of every instruction (a parameter, such as
  the logits or dense targets, or an earlier buffer), once per instruction.

Bitcasts and tuples are free; a fusion that only gathers one element per
row from an (N, C) array counts as a read (an overcount). A `conditional` counts its true branch, the
one that runs on valid one-hot rows (the dense `targets="any"` path's label
branch; the checks' no-error branch). Counts are for XLA's CPU backend in
this TensorFlow; another backend fuses differently.

`--buffers FILE` writes each program's buffer list: every materialised
(N, C) array, what its fusion computes and which instructions read it.

Example:
    python benchmarks/memory_passes.py --rows 512 --classes 1203 --buffers buffers.txt
"""

import argparse
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402
from loss_overhead import LOSSES, counterpart  # noqa: E402

_FREE = ("parameter", "bitcast", "tuple", "get-tuple-element", "constant")
_SHAPE = re.compile(r"[a-z]+[0-9]*\[([0-9,]*)\]")


def _elements(shape_text):
    """Element counts of every array in an HLO shape string."""
    return [int(np.prod([int(d) for d in dims.split(",") if d])) if dims else 1
            for dims in _SHAPE.findall(shape_text)]


def _computations(hlo):
    """name -> body text of every computation in an HLO module."""
    bodies, name, lines = {}, None, []
    for line in hlo.splitlines():
        header = re.match(r"(?:ENTRY )?(%[\w.\-]+) .*\{$", line)
        if header and not line.startswith(" "):
            name, lines = ("ENTRY" if line.startswith("ENTRY") else header.group(1)), []
        elif line.startswith("}") and name is not None:
            bodies[name] = "\n".join(lines)
            name = None
        elif name is not None:
            lines.append(line)
    return bodies


def _instructions(body):
    """`(name, shape, opcode, operands, call)` of every instruction of a computation body."""
    for line in body.splitlines():
        line = line.strip()
        if " = " not in line:
            continue
        name, rest = line.split(" = ", 1)
        name = name.replace("ROOT ", "").strip()
        if rest.startswith("("):  # a tuple shape, whose elements are separated by ", "
            depth = 0
            for end, character in enumerate(rest):
                depth += {"(": 1, ")": -1}.get(character, 0)
                if depth == 0:
                    break
            shape, call = rest[:end + 1], rest[end + 1:].lstrip()
        else:
            shape, _, call = rest.partition(" ")
        opcode = call.split("(", 1)[0]
        operands = re.findall(r"%[\w.\-]+", call.split(")", 1)[0]) if "(" in call else []
        yield name, shape, opcode, operands, call


def _branch(call):
    """The computation a `conditional` counts: `tf.cond`'s first function (see `walk`)."""
    return re.search(r"(?:true_computation=|branch_computations=\{)(%[\w.\-]+)", call).group(1)


def _fused_ops(call, bodies):
    """Sorted distinct opcodes inside a fusion's computation (what the buffer's pass computes)."""
    called = re.search(r"calls=(%[\w.\-]+)", call)
    if not called or called.group(1) not in bodies:
        return []
    inner = {opcode for _, _, opcode, _, _ in _instructions(bodies[called.group(1)])}
    return sorted(inner - {"parameter", "constant", "bitcast", "broadcast", "tuple",
                           "get-tuple-element"})


def walk(hlo, size, computation="ENTRY", bodies=None):
    """`(buffers, reads)` of the arrays with `size` elements in one computation.

    `buffers`: the materialised ones, in program order, each with `name`,
    `opcode`, `shape`, `ops` (for a fusion, the opcodes it computes), `reads`
    (the `size`-element operands it reads) and `readers` (the instructions
    that read it); their number is the writes. `reads`: the `size`-element
    operands read by every instruction, buffers or not (a reduction of the
    logits counts). A `conditional` counts its true branch (`tf.cond`'s first
    function: the branch that runs on valid one-hot rows, and on valid
    targets in the checks), its buffers prefixed with the branch's name, not
    the passing of its operands.
    """
    bodies = _computations(hlo) if bodies is None else bodies
    big, buffers, reads = {}, [], 0
    for name, shape, opcode, operands, call in _instructions(bodies[computation]):
        read = [operand for operand in operands if operand in big]
        if opcode == "conditional":
            branch = _branch(call)
            branch_buffers, branch_reads = walk(hlo, size, branch, bodies)
            buffers += [dict(entry, name=f"{branch}/{entry['name']}") for entry in branch_buffers]
            reads += branch_reads
        elif opcode not in ("tuple", "get-tuple-element", "bitcast"):
            reads += len(read)
            for operand in read:
                if big[operand] is not None:
                    big[operand]["readers"].append(name)
        if size not in _elements(shape):
            continue
        if opcode in _FREE + ("conditional",):
            big[name] = None  # an input or a view: read, not written here
            continue
        entry = {"name": name, "opcode": opcode, "shape": shape,
                 "ops": _fused_ops(call, bodies) if opcode == "fusion" else [],
                 "reads": read, "readers": []}
        big[name] = entry
        buffers.append(entry)
    return buffers, reads


def buffer_list(hlo, size):
    """The materialised arrays of `size` elements (`walk`'s buffers)."""
    return walk(hlo, size)[0]


def count_passes(hlo, size):
    """`(writes, reads)` of arrays with `size` elements (see `walk`)."""
    buffers, reads = walk(hlo, size)
    return len(buffers), reads


def format_buffers(variant, entries):
    """A readable buffer list of one program (one line a buffer)."""
    lines = [f"# {variant}: {len(entries)} materialised (N, C) buffers, forward + backward"]
    for entry in entries:
        what = f"{entry['opcode']}[{', '.join(entry['ops'])}]" if entry["ops"] else entry["opcode"]
        lines.append(f"{entry['name']} = {entry['shape']} {what}")
        lines.append(f"    reads (N, C): {', '.join(entry['reads']) or '-'}; "
                     f"read by: {', '.join(entry['readers']) or '- (output)'}")
    return "\n".join(lines) + "\n"


def _targets(kind, rows, width, key):
    rng = np.random.default_rng(0)
    labels = np.where(rng.random(rows) < 0.25, rng.integers(0, width, rows), width).astype(np.int32)
    if key == "softmax_eql":
        return tf.constant(rng.integers(0, width, rows).astype(np.int32))
    if kind == "sparse":
        return tf.constant(labels)
    dense = tf.one_hot(labels, width + 1)[:, :width]
    if kind == "quality":
        dense = dense * rng.uniform(0.3, 0.95, (rows, 1)).astype(np.float32)
    return dense


def program(loss, targets, logits):
    @tf.function(jit_compile=True)
    def step(y, z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = loss(y, z)
        return value, tape.gradient(value, z)

    step(targets, logits)
    return step.experimental_get_compiler_ir(targets, logits)(stage="optimized_hlo")


def rows_of(args):
    rows, width = args.rows, args.classes
    logits = tf.constant(np.random.default_rng(1).normal(0, 2, (rows, width)).astype(np.float32))
    size = rows * width
    out = []
    for name in ("BinaryCrossentropy", "BinaryFocalCrossentropy(alpha)", "BinaryFocalCrossentropy",
                 "SparseCategoricalCrossentropy"):
        kind = {"BinaryFocalCrossentropy": "quality"}.get(name, "dense")
        key = "softmax_eql" if name.startswith("Sparse") else None
        buffers, reads = walk(program(counterpart(name), _targets(kind, rows, width, key), logits),
                              size)
        out.append({"variant": name, "writes": len(buffers), "reads": reads, "buffers": buffers})
    for key, (cls, counterparts) in LOSSES.items():
        layouts = ["sparse"] if key == "softmax_eql" else ["sparse", "dense", "one_hot"]
        for labels in layouts:
            kind = "sparse" if labels == "sparse" else ("quality" if key == "eqfl" else "dense")
            route = {"targets": "one_hot"} if labels == "one_hot" else {}
            for statistics in (True, False):
                loss = cls(num_classes=width, update_statistics=statistics, **route)
                buffers, reads = walk(program(loss, _targets(kind, rows, width, key), logits), size)
                out.append({"variant": f"{cls.__name__}[{labels}" + ("]" if statistics else ",no-stats]"),
                            "loss": key, "counterparts": counterparts, "writes": len(buffers),
                            "reads": reads, "buffers": buffers})
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--classes", type=int, default=1203)
    parser.add_argument("--json")
    parser.add_argument("--buffers", metavar="FILE",
                        help="write every program's list of (N, C) buffers (optimized HLO) here")
    args = parser.parse_args(argv)
    results = rows_of(args)
    by_name = {r["variant"]: r for r in results}
    print(f"\n## (N, C) = ({args.rows}, {args.classes}) arrays in the optimized HLO, "
          "forward + backward under XLA")
    print(f"{'variant':52s} {'writes':>6s} {'reads':>6s} {'passes':>6s}   counterparts (passes)")
    for r in results:
        passes = r["writes"] + r["reads"]
        others = ", ".join(f"{name} {by_name[name]['writes'] + by_name[name]['reads']}"
                           for name in r.get("counterparts", []))
        print(f"{r['variant']:52s} {r['writes']:6d} {r['reads']:6d} {passes:6d}   {others}")
    if args.buffers:
        with open(args.buffers, "w") as handle:
            handle.write(f"# (N, C) = ({args.rows}, {args.classes}), XLA CPU, optimized HLO "
                         "(benchmarks/memory_passes.py)\n\n")
            handle.write("\n".join(format_buffers(r["variant"], r["buffers"]) for r in results))
    if args.json:
        _timing.write_json(args.json, {"machine": _timing.machine(), "arguments": vars(args),
                                       "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
