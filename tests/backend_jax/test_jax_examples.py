"""The examples under KERAS_BACKEND=jax: DataParallel and clear refusals.

Each run is a fresh interpreter (tests/example_runs.py) that runs the
example's `main` and then checks that no TensorFlow module was imported (a
JAX GPU host need not have TensorFlow); the classification smoke run is in
tests/backend_any. The DataParallel check runs the same smoke training on 2 host
devices with and without `--strategy data_parallel` and compares the
statistics the loss accumulated.
"""

import sys

import numpy as np
import pytest

from example_runs import EXAMPLES, run_example

sys.path.insert(0, str(EXAMPLES))

def test_detection_lt_data_parallel_equals_one_device(tmp_path):
    """Same global batches on 2 host devices (DataParallel) and on 1: the same statistics.

    The loss's per-class sums run over the global batch (one global-view
    program), so they agree up to float32 summation order (measured: the
    negative sums differ by about 1e-7 relative, the positive ones not at
    all); 1e-5 leaves room for other XLA versions and would still catch a
    sum over half the batch (a factor of about 2) or a step counted twice.
    """
    flags = ("--methods", "efl")
    single_stdout, single = run_example("detection_lt", tmp_path, *flags, devices=2, tag="default")
    parallel_stdout, parallel = run_example("detection_lt", tmp_path, *flags, "--strategy",
                                            "data_parallel", devices=2, tag="parallel")
    assert "DataParallel over 2 device(s)." in parallel_stdout
    assert "DataParallel" not in single_stdout
    one, two = single["results"]["efl"], parallel["results"]["efl"]
    assert one["statistics_steps"] >= 2 and two["statistics_steps"] == one["statistics_steps"]
    for key in ("positive", "negative", "ratio"):
        assert len(one[key]) == 36, key
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=0, err_msg=key)
    assert min(one["negative"]) > 0 and max(one["positive"]) > 0  # the statistics moved
    assert two["AP"] == pytest.approx(one["AP"], abs=1e-3)


def test_every_method_and_recipe_is_accepted_under_jax():
    import classification_lt

    args = classification_lt.parse_args(["--methods", "softmax_eql,balanced_softmax,logit_adjusted,seesaw",
                                         "--recipe", "authors"])
    assert args.methods == ["softmax_eql", "balanced_softmax", "logit_adjusted", "seesaw"]


@pytest.mark.parametrize("strategy", ["mirrored", "multiworker", "tpu"])
def test_tf_distribute_strategies_point_to_data_parallel(strategy):
    import _common

    with pytest.raises(SystemExit, match=f"--strategy {strategy} is a tf.distribute strategy, "
                                         "for KERAS_BACKEND=tensorflow; under jax use --strategy "
                                         "data_parallel"):
        _common.resolve_strategy(strategy, True)


def test_shuffled_batches_are_numpy_full_batches_reshuffled_every_epoch():
    import _common

    inputs = np.arange(10, dtype="float32")[:, None]
    dataset, steps = _common.shuffled_batches(inputs, {"labels": np.arange(10)}, 4, seed=0)
    assert steps == len(dataset) == 2  # the partial batch is dropped
    first = np.concatenate([dataset[index][0][:, 0] for index in range(steps)])
    assert all(np.array_equal(dataset[i][0][:, 0], dataset[i][1]["labels"]) for i in range(steps))
    dataset.on_epoch_end()
    second = np.concatenate([dataset[index][0][:, 0] for index in range(steps)])
    assert len(set(first)) == 8 and not np.array_equal(first, second)
