"""The benchmark scripts keep working (`--smoke`: tiny shapes, one call each).

These are not timed tests: they run each script in a subprocess, as CI does,
and check that every variant ran and produced a time, a ratio against its
Keras counterpart and the JSON the tables are made from. No assertion on a
duration or a ratio.
"""

import json
import math
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

SCRIPTS = {
    "loss_overhead.py": {"SigmoidEQL", "EqualizedFocalLoss", "EqualizedQualityFocalLoss", "SoftmaxEQL"},
    "train_step.py": {"SigmoidEQL", "EqualizedFocalLoss", "EqualizedQualityFocalLoss", "SoftmaxEQL"},
}


def _run(script, tmp_path, *extra):
    output = tmp_path / "result.json"
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / script), "--smoke", "--json", str(output), *extra],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(output.read_text()), completed.stdout


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_smoke_run_reports_every_variant(script, tmp_path):
    payload, stdout = _run(script, tmp_path)
    assert payload["machine"]["tensorflow"] and payload["machine"]["cpu"]
    results = payload["results"]
    modes = set(payload["arguments"]["modes"])
    assert {r["mode"] for r in results} == modes
    for mode in modes:
        ran = {r.get("class") for r in results if r["mode"] == mode and not r.get("counterpart")}
        assert ran == SCRIPTS[script], mode
        for implementation in ("fused", "autodiff"):
            assert any(r.get("implementation") == implementation for r in results if r["mode"] == mode)
    for r in results:
        assert r["times_ms"] and all(math.isfinite(t) and t > 0 for t in r["times_ms"]), r["variant"]
        assert r["median_cpu_ms"] >= 0
    # Every keras_eql variant is compared with each of its counterparts.
    compared = {(row["mode"], row["variant"], row["against"]) for row in payload["ratios"]}
    for r in results:
        if not r.get("counterpart"):
            assert any(key[:2] == (r["mode"], r["variant"]) for key in compared), r["variant"]
    assert all(math.isfinite(row["ratio"]) and row["ratio"] > 0 for row in payload["ratios"])
    assert "## ratios" in stdout


def test_loss_overhead_measures_statistics_and_memory(tmp_path):
    """The no-statistics twins and the peak memory (CPU allocator or RSS)."""
    payload, _ = _run("loss_overhead.py", tmp_path, "--modes", "jit", "--losses", "efl",
                      "--labels", "sparse,one_hot", "--no-stats")
    against = {row["against"] for row in payload["ratios"]}
    assert against == {"BinaryCrossentropy", "BinaryFocalCrossentropy(alpha)", "no statistics",
                       "sparse ids"}
    # Dense one-hot targets with targets="one_hot" against the same loss on class ids.
    routed = {row["variant"] for row in payload["ratios"] if row["against"] == "sparse ids"}
    assert routed == {"EqualizedFocalLoss[fused,one_hot]", "EqualizedFocalLoss[fused,one_hot,no-stats]"}
    assert all(r.get("peak_bytes") is not None for r in payload["results"])
    buffers = [row["extra_buffers"] for row in payload["ratios"] if "extra_buffers" in row]
    assert buffers and all(math.isfinite(b) for b in buffers)


def test_unknown_shape_is_refused():
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "loss_overhead.py"), "--shapes", "huge"],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert completed.returncode != 0 and "unknown shapes" in completed.stderr


def test_label_checks_smoke_run_reports_both_variants(tmp_path):
    payload, stdout = _run("label_checks.py", tmp_path)
    assert set(payload["median_ms"]) == {"checks", "no_checks"}
    assert all(math.isfinite(payload["ratio"][clock]) for clock in ("wall", "cpu"))
    assert "with / without label checks" in stdout


def test_kerashub_step_smoke_run_compares_efl_with_kerashub_focal(tmp_path):
    """`kerashub_step.py`: a tiny RetinaNet's fit steps (no XLA here, to keep the test short)."""
    pytest.importorskip("keras_hub", reason="kerashub_step.py needs keras-hub")
    payload, stdout = _run("kerashub_step.py", tmp_path, "--no-jit-compile")
    assert payload["machine"]["cpu"]
    variants = {r["variant"] for r in payload["results"]}
    assert variants == {"focal (KerasHub)", "EqualizedFocalLoss[one_hot]"}
    for r in payload["results"]:
        assert r["times_ms"] and all(math.isfinite(t) and t > 0 for t in r["times_ms"]), r["variant"]
    against = {(row["variant"], row["against"]) for row in payload["ratios"]}
    assert against == {("EqualizedFocalLoss[one_hot]", "focal (KerasHub)")}
    assert all(math.isfinite(row["ratio"]) and row["ratio"] > 0 for row in payload["ratios"])
    assert "## ratios" in stdout


def test_memory_passes_buffer_list_agrees_with_the_pass_count():
    """`memory_passes.py`'s buffer list (issue #15's HLO evidence) is the count, buffer by buffer."""
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import memory_passes
    import numpy as np
    import tensorflow as tf

    import keras_eql

    rows, width = 24, 37  # no other array of the program has rows x width elements
    logits = tf.constant(np.random.default_rng(1).normal(0, 2, (rows, width)).astype(np.float32))
    for update_statistics in (True, False):
        loss = keras_eql.EqualizedFocalLoss(num_classes=width, update_statistics=update_statistics)
        hlo = memory_passes.program(loss, memory_passes._targets("sparse", rows, width, None), logits)
        writes, reads = memory_passes.count_passes(hlo, rows * width)
        buffers = memory_passes.buffer_list(hlo, rows * width)
        assert len(buffers) == writes > 0
        assert sum(len(entry["reads"]) for entry in buffers) <= reads
        text = memory_passes.format_buffers("EFL", buffers)
        assert text.count(f"f32[{rows},{width}]") >= writes
        # The gradient w.r.t. the logits is an output: some buffer is read by nothing.
        assert any(not entry["readers"] for entry in buffers)
        assert all(entry["ops"] for entry in buffers if entry["opcode"] == "fusion")


def test_memory_passes_reads_tuple_shapes_as_free():
    """A tuple-shaped instruction (its shape has spaces) is neither a write nor a buffer."""
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import memory_passes

    hlo = "\n".join([
        "%fused (p: f32[4,3]) -> f32[4,3] {",
        "  %p = f32[4,3]{1,0} parameter(0)",
        "  ROOT %e = f32[4,3]{1,0} exponential(%p)",
        "}",
        "ENTRY %main (a: f32[4,3]) -> f32[4,3] {",
        "  %a = f32[4,3]{1,0} parameter(0)",
        "  %r = f32[4]{0} parameter(1)",
        "  %t = (f32[4,3]{1,0}, f32[4]{0}) tuple(%a, %r)",
        "  ROOT %f = f32[4,3]{1,0} fusion(%a), kind=kLoop, calls=%fused",
        "}",
    ])
    assert memory_passes.count_passes(hlo, 12) == (1, 1)
    (entry,) = memory_passes.buffer_list(hlo, 12)
    assert (entry["name"], entry["ops"], entry["reads"]) == ("%f", ["exponential"], ["%a"])
