#!/usr/bin/env bash
# Optional legacy job: tensorflow-addons vs keras_eql.
#
# tensorflow-addons (tfa) reached end of life in May 2024. Its last release,
# 0.23.0, supports TF 2.13-2.15 only: beside TF >= 2.16 (Keras 3) it installs
# but fails to import (`No module named 'keras.src.engine'`). keras_eql needs
# Keras 3, so the two cannot share a venv. This job shows that
# `keras_eql.EqualizedFocalLoss(scale=0)` (no equalization: plain focal loss)
# equals `tfa.losses.SigmoidFocalCrossEntropy` on the same inputs:
#
#   1. the main venv (Keras 3) draws inputs and computes keras_eql's per-row
#      losses; both go to an .npz file;
#   2. a legacy venv (python3.11, TF 2.15 + tensorflow-addons 0.23 + numpy<2)
#      computes tfa's loss on the same inputs, plus a float64 NumPy reference,
#      and compares all three;
#   3. (--check-new-tf) a third throwaway venv shows that tfa fails to import
#      beside TF 2.21.
#
# Usage: scripts/legacy_tfa_job.sh [--check-new-tf]
# Env:   MAIN_PYTHON (default .venv/bin/python), LEGACY_VENV (default
#        /tmp/keras_eql-legacy-tfa), NEW_TF_VENV (default
#        /tmp/keras_eql-tfa-new-tf), PYTHON311 (default python3.11).
# Exit status: 0 when every comparison passes, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

MAIN_PYTHON=${MAIN_PYTHON:-.venv/bin/python}
LEGACY_VENV=${LEGACY_VENV:-/tmp/keras_eql-legacy-tfa}
NEW_TF_VENV=${NEW_TF_VENV:-/tmp/keras_eql-tfa-new-tf}
PYTHON311=${PYTHON311:-python3.11}
CHECK_NEW_TF=0
[[ "${1:-}" == "--check-new-tf" ]] && CHECK_NEW_TF=1

# pip's own complaints about this machine's package mirrors are not the job's output.
quiet_pip() { "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export TF_CPP_MIN_LOG_LEVEL=2

echo "== 1. keras_eql (main venv) computes EqualizedFocalLoss(scale=0)"
"$MAIN_PYTHON" - "$WORK/inputs.npz" <<'EOF'
import sys
import numpy as np
import keras
import tensorflow as tf
import keras_eql

rng = np.random.default_rng(2024)
rows, classes = 64, 7
logits = rng.normal(scale=4.0, size=(rows, classes)).astype("float32")
logits[0, :3] = [30.0, -30.0, 60.0]      # large logits (tfa's float32 sigmoid saturates)
targets = (rng.random((rows, classes)) < 0.2).astype("float32")
targets[1] = 0.0                          # a row without positives
out = {"logits": logits, "targets": targets}
for gamma in (1.0, 2.0, 3.5):
    for alpha in (0.25, 0.6, None):
        loss = keras_eql.EqualizedFocalLoss(
            num_classes=classes, alpha=alpha, gamma=gamma, scale=0.0, reduction="none")
        key = f"gamma={gamma},alpha={alpha}"
        out["keras_eql:" + key] = np.asarray(loss(targets, logits))
np.savez(sys.argv[1], **out)
print(f"keras {keras.__version__}, tensorflow {tf.__version__}, keras_eql {keras_eql.__version__}:"
      f" {len(out) - 2} configurations x {rows} rows")
EOF

echo "== 2. legacy venv: TF 2.15 + tensorflow-addons 0.23 ($LEGACY_VENV)"
if [[ ! -x "$LEGACY_VENV/bin/python" ]]; then
  "$PYTHON311" -m venv "$LEGACY_VENV"
  quiet_pip "$LEGACY_VENV/bin/pip" install --quiet --upgrade pip
  quiet_pip "$LEGACY_VENV/bin/pip" install --quiet "tensorflow-cpu==2.15.1" "tensorflow-addons==0.23.0" "numpy<2"
fi
"$LEGACY_VENV/bin/python" - "$WORK/inputs.npz" <<'EOF'
import sys
import warnings
import numpy as np
import tensorflow as tf

tf.get_logger().setLevel("ERROR")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import tensorflow_addons as tfa
for message in dict.fromkeys(" ".join(str(w.message).split())[:240] for w in caught):
    print(f"tfa warning: {message}")
print(f"tensorflow {tf.__version__}, tensorflow-addons {tfa.__version__}, numpy {np.__version__}")

data = np.load(sys.argv[1])
logits, targets = data["logits"], data["targets"]


def reference(targets, logits, alpha, gamma):
    """Focal loss in float64 (Lin et al.), summed over classes."""
    z, y = logits.astype(np.float64), targets.astype(np.float64)
    signed = (2 * y - 1) * z
    log_p_t = -np.logaddexp(0.0, -signed)           # log sigmoid(signed)
    one_minus_p_t = np.exp(-np.logaddexp(0.0, signed))
    loss = -(one_minus_p_t ** gamma) * log_p_t
    if alpha is not None:
        loss *= alpha * y + (1 - alpha) * (1 - y)
    return loss.sum(-1)


failures = 0
for key in sorted(k for k in data.files if k.startswith("keras_eql:")):
    config = key.split(":", 1)[1]
    gamma = float(config.split(",")[0].split("=")[1])
    alpha_text = config.split(",")[1].split("=")[1]
    alpha = None if alpha_text == "None" else float(alpha_text)
    tfa_loss = tfa.losses.SigmoidFocalCrossEntropy(
        from_logits=True, alpha=alpha if alpha is not None else 0.0, gamma=gamma,
        reduction=tf.keras.losses.Reduction.NONE)
    ours = data[key]
    theirs = tfa_loss(targets, logits).numpy()
    ref = reference(targets, logits, alpha, gamma)
    ours_vs_tfa = np.abs(ours - theirs).max()
    ours_vs_ref = np.abs(ours - ref).max()
    tfa_vs_ref = np.abs(theirs - ref).max()
    ok = (np.allclose(ours, theirs, rtol=1e-5, atol=1e-6)
          and np.allclose(ours, ref, rtol=1e-5, atol=1e-6))
    failures += not ok
    print(f"{config:22s} max|keras_eql - tfa| = {ours_vs_tfa:.2e}  "
          f"max|keras_eql - ref| = {ours_vs_ref:.2e}  max|tfa - ref| = {tfa_vs_ref:.2e}  "
          f"{'OK' if ok else 'MISMATCH'}")
print(f"{'all equal' if failures == 0 else f'{failures} mismatches'} "
      "(rtol 1e-5, atol 1e-6; ref = float64 NumPy focal loss)")
sys.exit(1 if failures else 0)
EOF

if [[ $CHECK_NEW_TF == 1 ]]; then
  echo "== 3. tensorflow-addons 0.23 beside TF 2.21 ($NEW_TF_VENV)"
  if [[ ! -x "$NEW_TF_VENV/bin/python" ]]; then
    "$PYTHON311" -m venv "$NEW_TF_VENV"
    quiet_pip "$NEW_TF_VENV/bin/pip" install --quiet "tensorflow-cpu==2.21.0" "tensorflow-addons==0.23.0"
  fi
  "$NEW_TF_VENV/bin/python" - <<'EOF'
import warnings
import tensorflow as tf
import keras
warnings.simplefilter("ignore")
print(f"tensorflow {tf.__version__}, keras {keras.__version__}")
try:
    import tensorflow_addons  # noqa: F401
    print("import tensorflow_addons: OK")
except Exception as error:  # the expected outcome
    print(f"import tensorflow_addons: {type(error).__name__}: {error}")
EOF
fi
