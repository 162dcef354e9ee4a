"""`keras-eql demo`: argument errors, the table, and a smoke run of the console script."""

import configparser
import csv
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from keras_eql import cli

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
REAL_FILES = os.path.isfile("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def console_script():
    """The installed `keras-eql` entry point next to this interpreter, else on PATH."""
    local = pathlib.Path(sys.executable).with_name("keras-eql")
    return str(local) if local.exists() else shutil.which("keras-eql")


@pytest.mark.parametrize("argv, fragment", [
    (["--epochs", "0"], "argument --epochs: must be a positive integer, got '0'"),
    (["--epochs", "two"], "argument --epochs: must be a positive integer, got 'two'"),
    (["--imbalance-factor", "0.5"], "argument --imbalance-factor: must be a finite number >= 1, got '0.5'"),
    (["--imbalance-factor", "nan"], "got 'nan'"),
    (["--learning-rate=-1e-3"], "argument --learning-rate: must be a positive number, got '-1e-3'"),
    (["--batch-size", "0"], "argument --batch-size: must be a positive integer, got '0'"),
    (["--methods", "cross_entropy,focal"], "unknown method(s) ['focal']"),
    (["--verbose", "5"], "argument --verbose: invalid choice: 5"),
])
def test_bad_arguments_exit_with_a_message_naming_the_value(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", *argv])
    assert exit_info.value.code == 2
    assert fragment in capsys.readouterr().err


def test_without_a_command_the_help_is_printed(capsys):
    assert cli.main([]) == 2
    assert "demo" in capsys.readouterr().err


def test_version_is_printed(capsys):
    import keras_eql

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"keras-eql {keras_eql.__version__}"


def test_the_demo_help_names_the_four_methods_it_trains(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "vs cross-entropy" not in help_text
    assert "train cross-entropy, Softmax-EQL and two baselines" in help_text
    assert len(cli.METHODS) == 4


def test_cross_entropy_is_softmax_eql_without_reweighting_so_it_has_statistics():
    import keras

    import keras_eql

    loss = cli.make_loss("cross_entropy", [600, 60, 6])
    assert isinstance(loss, keras_eql.SoftmaxEQL) and loss.tau == 0.0 and loss.name == "cross_entropy"
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(8, 3)).astype("float32"), np.arange(8) % 3
    loss.statistics.assign([5.0, 1.0, 0.1], [1.0, 2.0, 3.0], 7)  # statistics do not change cross-entropy
    reference = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    np.testing.assert_allclose(float(loss(labels, logits)), float(reference(labels, logits)), rtol=1e-6)


def test_defaults_are_the_documented_ones():
    args = cli.build_parser().parse_args(["demo"])
    assert (args.epochs, args.imbalance_factor, args.seed, args.output_dir) == (12, 100.0, 0, "demo_output")
    assert args.jit_compile is True and args.methods == list(cli.METHODS)


def test_format_table_prints_percentages_per_group():
    table = cli.format_table({"softmax_eql": {"overall": 0.848, "head": 0.926, "medium": 0.688, "tail": 0.904}})
    header, row = table.splitlines()
    assert header.split() == ["method", "overall", "head", "medium", "tail"]
    assert row.split() == ["softmax_eql", "84.8", "92.6", "68.8", "90.4"]


def test_demo_smoke_run_writes_results_figure_and_logs(tmp_path):
    script = console_script()
    assert script, "the keras-eql console script is not installed (pip install -e .)"
    output = tmp_path / "demo"
    completed = subprocess.run(
        [script, "demo", "--epochs", "1", "--max-train-samples", "512", "--max-test-samples", "500",
         "--output-dir", str(output), "--verbose", "0"],
        capture_output=True, text=True, timeout=420, cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert completed.returncode == 0, completed.stderr[-3000:]

    results = json.loads((output / "results.json").read_text())
    try:
        import keras_eql.baselines  # noqa: F401
        expected = set(cli.METHODS)
    except ImportError:
        expected = {"cross_entropy", "softmax_eql"}
    assert set(results) == expected
    for method, row in results.items():
        assert set(row) == {"overall", "head", "medium", "tail"}, method
        assert all(0.0 <= value <= 1.0 for value in row.values()), (method, row)
    table = completed.stdout.split("Top-1 accuracy (%)")[-1]
    printed = {line.split()[0] for line in table.splitlines()[2:] if line.strip()}
    assert set(results) <= printed, completed.stdout[-2000:]

    details = json.loads((output / "details.json").read_text())
    assert details["groups"] == {"head": [0, 1, 2, 3], "medium": [4, 5, 6], "tail": [7, 8, 9]}
    if REAL_FILES:
        assert details["data_source"] == "idx:/usr/share/datasets/fashion-mnist"
        assert "USING SYNTHETIC DATA" not in completed.stderr
    statistics = details["methods"]["softmax_eql"]["gradient_statistics"]
    assert np.sum(statistics["positive"]) > 0  # the loss trained and its statistics moved

    assert np.sum(details["methods"]["cross_entropy"]["gradient_statistics"]["positive"]) > 0

    from PIL import Image

    pixels = np.asarray(Image.open(output / "gradient_statistics.png").convert("RGB")).reshape(-1, 3)
    orange, blue = (255, 127, 14), (31, 119, 180)  # cross-entropy's bars beside Softmax-EQL's
    for color in (orange, blue):
        assert (np.abs(pixels.astype(int) - color).sum(-1) < 10).sum() > 100, color
    for method in results:
        tags = tensorboard_tags(output / "tensorboard" / method / "test")
        assert tags == {f"test_accuracy/{name}" for name in ("overall", "head", "medium", "tail")}, method
        assert any(name.startswith("epoch_") for name in tensorboard_tags(output / "tensorboard" / method / "train"))
    for method in ("cross_entropy", "softmax_eql"):
        tags = tensorboard_tags(output / "tensorboard" / method / "train")
        assert {f"{method}/ratio_mean/tail", f"{method}/gradient_statistics/ratio"} <= tags, method
    with open(output / "statistics.csv", newline="") as handle:  # Fig. 2's data, both losses
        outputs = {row["output"] for row in csv.DictReader(handle)}
    assert outputs == {"cross_entropy", "softmax_eql"}


def test_make_demo_installs_only_what_the_demo_needs(tmp_path):
    """`make demo` installs the `demo` extra; `make test` everything (dry runs, nothing installed)."""
    make = shutil.which("make")
    assert make, "make is not installed (apt-get install make)"

    def dry_run(target):
        completed = subprocess.run([make, "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=REPO_ROOT,
                                   capture_output=True, text=True, timeout=60)
        assert completed.returncode == 0, completed.stderr
        # Only the main venv's installs: the backend venvs' lines appear when they are not built yet.
        return [line for line in completed.stdout.splitlines()
                if "pip install" in line and "-e" in line and line.startswith(str(tmp_path))]

    assert dry_run("demo") == [f"{tmp_path / 'venv'}/bin/python -m pip install --quiet -e '.[tensorflow,demo]'"]
    (test_install,) = dry_run("test")
    assert "test" in test_install and "demo" in test_install and "tensorflow" in test_install
    setup = configparser.ConfigParser()
    setup.read(REPO_ROOT / "setup.cfg")
    demo_requirements = setup["options.extras_require"]["demo"].split()
    assert demo_requirements == ["matplotlib", "tensorboard"]  # the figure and the TensorBoard logs


def tensorboard_tags(directory):
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(str(directory))
    accumulator.Reload()
    return set(accumulator.Tags()["tensors"]) | set(accumulator.Tags()["scalars"])
