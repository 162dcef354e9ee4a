# Two commands work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# One stamp per dependency set: `make demo` installs only what the demo needs,
# `make test` everything (the demo's set included).
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test

# The JAX backend's tests run in their own venv, without TensorFlow.
JAX_VENV := .venv-jax
JAX_PY := $(JAX_VENV)/bin/python
JAX_STAMP := $(JAX_VENV)/.installed-jax
JAX_REQUIREMENTS = $(shell $(PYTHON) -c "import configparser; c = configparser.ConfigParser(); \
	c.read('setup.cfg'); print(' '.join(repr(r) for r in c['options.extras_require']['jax'].split()))")

.PHONY: demo test test-jax venv data clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(DEMO_STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet -e '.[demo]'
	touch $@

$(TEST_STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet -e '.[test,plot,demo]'
	touch $@ $(DEMO_STAMP)

$(JAX_STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(JAX_VENV)
	$(JAX_PY) -m pip install --quiet --upgrade pip
	$(JAX_PY) -m pip install --quiet --no-deps -e .
	$(JAX_PY) -m pip install --quiet $(JAX_REQUIREMENTS) pytest pytest-timeout matplotlib pycocotools
	touch $@

venv: $(TEST_STAMP)

# Real Fashion-MNIST from Debian's package, when this machine can install it.
data:
	@bash scripts/install_data.sh

demo: $(DEMO_STAMP) data
	$(VENV)/bin/keras-eql demo

# tests/backend_jax under KERAS_BACKEND=jax (tests/conftest.py leaves them out otherwise).
JAX_TESTS = KERAS_BACKEND=jax JAX_PLATFORMS=cpu $(JAX_PY) -m pytest -q tests/backend_jax

test: $(TEST_STAMP) $(JAX_STAMP) data
	$(PY) -m pytest -q
	$(JAX_TESTS)

test-jax: $(JAX_STAMP)
	$(JAX_TESTS)

clean:
	rm -rf $(VENV) $(JAX_VENV) build *.egg-info
