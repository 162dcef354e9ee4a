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


@pytest.mark.parametrize("module_name", [
    "keras_eql.functional", "keras_eql.losses", "keras_eql.layers", "keras_eql._targets"])
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
