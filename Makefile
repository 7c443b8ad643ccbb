# The two set-up commands are `make demo` and `make test`; everything else here serves them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lint install system-deps bench models clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test,controller,demo]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

demo: install
	$(PY) -m edgefleet demo

system-deps:
	bash deploy/dev/ensure-test-deps.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Most tests wait on real processes (brokers, agents, browsers), not on the CPU: three workers
# on two cores halve the wall time. PYTEST_WORKERS=0 runs the suite in one process.
PYTEST_WORKERS ?= 3
PYTEST_DIST ?= worksteal

test: install system-deps lint
	$(PY) -m pytest -p no:cacheprovider -n $(PYTEST_WORKERS) --dist $(PYTEST_DIST) $(PYTEST_ARGS)

bench: install
	$(PY) bench/run_all.py

# Rebuilds the shipped demo models; needs the heavy build-only extra (TensorFlow) in its own venv.
models:
	$(PYTHON) -m venv .venv-build
	.venv-build/bin/pip install --quiet -e '.[build]'
	.venv-build/bin/python models/build_demo.py
	.venv-build/bin/python models/build_watch.py
	.venv-build/bin/python models/build_watch_update.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
