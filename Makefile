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

# The PyTorch backend's tests too, without TensorFlow or JAX. torch is pinned to
# 2.13.0, the CPU build that lies on these machines' disk: pip takes it from there,
# while plain `torch` (or the extra's range, with nothing installed yet) would
# download a CUDA build of several GB. The rest of the `torch` extra then installs
# nothing more for torch.
TORCH_VENV := .venv-torch
TORCH_PY := $(TORCH_VENV)/bin/python
TORCH_STAMP := $(TORCH_VENV)/.installed-torch
TORCH_PIN := torch==2.13.0
TORCH_REQUIREMENTS = $(shell $(PYTHON) -c "import configparser; c = configparser.ConfigParser(); \
	c.read('setup.cfg'); print(' '.join(repr(r) for r in c['options.extras_require']['torch'].split()))")

.PHONY: demo test test-jax test-torch venv data clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(DEMO_STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet -e '.[tensorflow,demo]'
	touch $@

$(TEST_STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet -e '.[tensorflow,test,plot,demo]'
	touch $@ $(DEMO_STAMP)

$(JAX_STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(JAX_VENV)
	$(JAX_PY) -m pip install --quiet --upgrade pip
	$(JAX_PY) -m pip install --quiet --no-deps -e .
	$(JAX_PY) -m pip install --quiet $(JAX_REQUIREMENTS) pytest pytest-timeout matplotlib pycocotools
	touch $@

$(TORCH_STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_PY) -m pip install --quiet --upgrade pip
	$(TORCH_PY) -m pip install --quiet --no-deps -e .
	$(TORCH_PY) -m pip install --quiet '$(TORCH_PIN)' $(TORCH_REQUIREMENTS) pytest pytest-timeout matplotlib pycocotools
	touch $@

venv: $(TEST_STAMP)

# Real Fashion-MNIST from Debian's package, when this machine can install it.
data:
	@bash scripts/install_data.sh

demo: $(DEMO_STAMP) data
	$(VENV)/bin/keras-eql demo

# tests/backend_jax (and tests/backend_any) under KERAS_BACKEND=jax (tests/conftest.py
# leaves them out otherwise); tests/backend_torch (and backend_any) under =torch, likewise.
JAX_TESTS = KERAS_BACKEND=jax JAX_PLATFORMS=cpu $(JAX_PY) -m pytest -q tests/backend_jax tests/backend_any
TORCH_TESTS = KERAS_BACKEND=torch $(TORCH_PY) -m pytest -q tests/backend_torch tests/backend_any

# TensorFlow's suite keeps about one core busy; the JAX and PyTorch suites run
# beside it on the other (their output follows TensorFlow's). Fails if any fails.
BACKEND_LOG := .backend-tests.log
test: $(TEST_STAMP) $(JAX_STAMP) $(TORCH_STAMP) data
	@( $(JAX_TESTS) && $(TORCH_TESTS) ) > $(BACKEND_LOG) 2>&1 & backends=$$!; \
	$(PY) -m pytest -q; tensorflow=$$?; \
	wait $$backends; backends=$$?; \
	echo "== JAX and PyTorch suites"; cat $(BACKEND_LOG); \
	test $$tensorflow -eq 0 && test $$backends -eq 0

test-jax: $(JAX_STAMP)
	$(JAX_TESTS)

test-torch: $(TORCH_STAMP)
	$(TORCH_TESTS)

clean:
	rm -rf $(VENV) $(JAX_VENV) $(TORCH_VENV) $(BACKEND_LOG) build *.egg-info
