# Two commands work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv data clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet -e '.[test,plot]'
	touch $(STAMP)

venv: $(STAMP)

# Real Fashion-MNIST from Debian's package, when this machine can install it.
data:
	@bash scripts/install_data.sh

demo: venv data
	$(VENV)/bin/keras-eql demo

test: venv data
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
