"""`examples/detection_lt.py --smoke` under KERAS_BACKEND=torch with torch.compile, without TensorFlow.

The example trains EFL with `jit_compile=True` (the default), which under
PyTorch is torch.compile: it must compile and train, and the loss's
statistics must count each training step once. Without the examples' static
shapes (`_common._static_shapes_under_torch_compile`) torch 2.13's inductor
fails on the re-traced step (`ValueRangeError`), which this test catches.
"""

import numpy as np

from example_runs import run_example


def test_detection_lt_smoke_trains_efl_under_torch_compile(tmp_path):
    stdout, report = run_example("detection_lt", tmp_path, "--methods", "efl")
    assert "no tensorflow" in stdout
    row = report["results"]["efl"]
    assert row["statistics_steps"] >= 2
    assert len(row["positive"]) == 36 and max(row["positive"]) > 0 and min(row["negative"]) > 0
    assert np.isfinite(row["AP"]) and 0.0 <= row["AP"] <= 100.0
