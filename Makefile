# Two commands work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# One stamp per dependency set: `make demo` installs only what the demo needs,
# `make test` everything (the demo's set included).
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test venv data clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(DEMO_STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet -e '.[demo]'
	touch $@

$(TEST_STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet -e '.[test,plot,demo]'
	touch $@ $(DEMO_STAMP)

venv: $(TEST_STAMP)

# Real Fashion-MNIST from Debian's package, when this machine can install it.
data:
	@bash scripts/install_data.sh

demo: $(DEMO_STAMP) data
	$(VENV)/bin/keras-eql demo

test: $(TEST_STAMP) data
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
