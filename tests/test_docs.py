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


@pytest.mark.parametrize("module_name", [
    "keras_eql.functional", "keras_eql.losses", "keras_eql.layers"])
def test_docstring_examples(module_name):
    module = __import__(module_name, fromlist=["_"])
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
