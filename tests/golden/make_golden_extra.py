"""Golden vectors beyond the shared set, from the same independent NumPy reference.

    python tests/golden/make_golden_extra.py [PATH_TO_shared/golden]

Writes, next to this script:

* `golden_sigmoid_eql_varying_rows.npz`: Sigmoid-EQL (objectness column) over
  8 steps whose number of counted rows changes every step (0 % to 50 % of
  the 32 rows ignored, two steps with none and one with half). On our side
  ignored rows carry label -1; the reference never sees them (the authors'
  code has no ignore label, so their detector drops those rows before the
  loss). `grad` is zero on ignored rows.
* `golden_softmax_eql_negative.npz`, `golden_softmax_eql_pos_and_neg.npz`:
  Softmax-EQL with `indicator="neg"` and `"pos_and_neg"` (the authors'
  `pos_neg + neg_grad`) on the inputs of the shared `golden_softmax_eql.npz`.

Keys and conventions are those of the shared golden README. The reference
(`eql_reference.py`) is imported from the shared folder at generation time
only; the tests read the committed `.npz` files.
"""

import json
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).parent
SHARED = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "golden"
sys.path.insert(0, str(SHARED))
import eql_reference as ref  # noqa: E402
import make_golden  # noqa: E402

ROWS = 32
IGNORED_PER_STEP = [0, 16, 5, 11, 0, 2, 9, 16]  # 0 % ... 50 % of the rows


def _save(name, meta, **arrays):
    np.savez(HERE / name, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)


def sigmoid_eql_varying_rows(seed=1101):
    rng = np.random.default_rng(seed)
    classes = 10
    frequencies = [0.40, 0.20, 0.12, 0.09, 0.07, 0.05, 0.03, 0.025, 0.015, 0.0]
    steps = len(IGNORED_PER_STEP)
    logits = rng.normal(-1.0, 2.0, size=(steps, ROWS, classes + 1))
    labels = np.empty((steps, ROWS), np.int64)
    model = ref.SigmoidEQL(classes, gamma=12.0, mu=0.8, alpha=4.0, loss_weight=1.0)
    out = {key: [] for key in ("loss", "grad", "pos_grad", "neg_grad", "pos_neg", "pos_neg_used")}
    for t, ignored in enumerate(IGNORED_PER_STEP):
        row_labels = make_golden._tail_labels(rng, ROWS, frequencies)
        row_labels[rng.random(ROWS) < 0.4] = classes
        row_labels[rng.choice(ROWS, size=ignored, replace=False)] = -1
        labels[t] = row_labels
        counted = row_labels != -1
        step = model.step(logits=logits[t][counted], labels=row_labels[counted])
        grad = np.zeros_like(logits[t])
        grad[counted] = step["grad"]
        state = model.state_dict()
        out["loss"].append(step["loss"])
        out["grad"].append(grad)
        out["pos_neg_used"].append(step["pos_neg_used"])
        for key in ("pos_grad", "neg_grad", "pos_neg"):
            out[key].append(state[key])
    _save("golden_sigmoid_eql_varying_rows.npz",
          dict(loss="sigmoid_eql", num_classes=classes, init_ratio=100.0, gamma=12.0, mu=0.8,
               alpha=4.0, loss_weight=1.0, ignore_label=-1, ignored_per_step=IGNORED_PER_STEP),
          logits=logits, labels=labels, **{key: np.asarray(value) for key, value in out.items()})


def softmax_eql_indicators():
    inputs = make_golden.inputs_softmax()
    for indicator, name in (("neg", "negative"), ("pos_and_neg", "pos_and_neg")):
        hp = dict(tau=1.0, eps=1e-4, indicator=indicator, loss_weight=1.0)
        _, outs, after = make_golden.run_softmax(inputs, **hp)
        arrays = dict(logits=inputs["logits"], labels=inputs["labels"], **make_golden._common(outs, after),
                      indicator_used=make_golden._stack(outs, "indicator_used"))
        _save(f"golden_softmax_eql_{name}.npz",
              dict(loss="softmax_eql", num_classes=inputs["num_classes"], **hp), **arrays)


if __name__ == "__main__":
    sigmoid_eql_varying_rows()
    softmax_eql_indicators()
