"""Serve exported SavedModels in a process where keras_eql cannot be imported.

    python serve_worker.py INPUTS_NPZ OUTPUTS_NPZ EXPORT_DIR...

A `sys.meta_path` finder refuses `keras_eql` (the package is installed
editable in the venv, so leaving the repo off sys.path is not enough); the
script checks that `import keras_eql` fails, loads every SavedModel with
`tf.saved_model.load`, calls its `serve` endpoint on the inputs, and writes
the outputs. It exits non-zero if keras_eql is importable or got imported.
"""

import importlib.abc
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class BlockKerasEql(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "keras_eql" or fullname.startswith("keras_eql."):
            raise ImportError(f"{fullname} is blocked in the serving process")
        return None


sys.meta_path.insert(0, BlockKerasEql())
sys.path = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != os.environ.get("REPO_ROOT")]

try:
    import keras_eql  # noqa: F401
except ImportError as error:
    print(f"import keras_eql: ImportError: {error}")
else:
    print("import keras_eql succeeded: the check is broken")
    sys.exit(3)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def main():
    inputs, outputs, directories = sys.argv[1], sys.argv[2], sys.argv[3:]
    x = np.load(inputs)["x"]
    results = {}
    for directory in directories:
        served = tf.saved_model.load(directory)
        results[os.path.basename(directory)] = np.asarray(served.serve(tf.constant(x)))
    leaked = sorted(name for name in sys.modules if name.split(".")[0] == "keras_eql")
    if leaked:
        print(f"keras_eql modules were imported: {leaked}")
        sys.exit(4)
    np.savez(outputs, **results)
    print(f"served {len(results)} models: {sorted(results)}")


if __name__ == "__main__":
    main()
