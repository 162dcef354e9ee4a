"""The README's quick start and the core docstring examples run as written."""

import doctest
import re

import pytest

from conftest import REPO_ROOT


def test_readme_quick_start_runs():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    exec(compile(code, "README quick start", "exec"), namespace)
    ratio = namespace["model"].loss.gradient_statistics()["ratio"]
    assert ratio.shape == (10,) and (ratio >= 0).all() and (ratio <= 1).all()


def test_readme_custom_loss_with_statistics_runs():
    readme = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    (code,) = [block for block in blocks if "statistics.capture(" in block]
    namespace = {}
    exec(compile(code, "README custom loss", "exec"), namespace)
    statistics = namespace["statistics"]
    assert float(statistics.steps.numpy()) == 1.0
    values = statistics.numpy()
    assert (values["positive"] > 0).all() and (values["negative"] > 0).all()


def test_readme_observability_example_runs_on_a_two_output_model(tmp_path, monkeypatch):
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Observability", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README observability", "exec"), namespace)
    statistics = namespace["statistics"]
    assert list(statistics) == ["cls"] and statistics["cls"]["ratio"].shape == (8,)
    assert (tmp_path / "fig1.png").stat().st_size and (tmp_path / "fig2.png").stat().st_size
    assert list((tmp_path / "logs" / "train").glob("events.out.tfevents.*"))
    header = (tmp_path / "stats.csv").read_text().splitlines()[0]
    assert header == "epoch,step,output,class,class_name,group,positive,negative,ratio"


def test_readme_figures_exist():
    readme = (REPO_ROOT / "README.md").read_text()
    images = re.findall(r"docs/images/[\w.-]+\.png", readme)
    assert len(set(images)) >= 3
    for image in images:
        assert (REPO_ROOT / image).stat().st_size > 10_000, image


@pytest.mark.parametrize("module_name", [
    "keras_eql.functional", "keras_eql.losses", "keras_eql.layers", "keras_eql._checks",
    "keras_eql._backend"])
def test_docstring_examples(module_name):
    module = __import__(module_name, fromlist=["_"])
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result


def test_readme_commands_say_which_python_and_write_only_ignored_outputs():
    """The newcomer's two stumbles: `python examples/...` outside `.venv`, and `seg.json` in the root."""
    readme = (REPO_ROOT / "README.md").read_text()
    assert "source .venv/bin/activate" in readme and "No module named 'keras_eql'" in readme
    commands = [line for block in re.findall(r"```bash\n(.*?)```", readme, re.S)
                for line in block.splitlines() if line.startswith("python examples/")]
    assert commands
    ignored = (REPO_ROOT / ".gitignore").read_text().split()
    for command in commands:
        for path in re.findall(r"--output\s+(\S+)", command):
            assert f"/{path.split('/')[0]}/" in ignored, command
