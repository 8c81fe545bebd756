# Two-command quickstart: `make sweep` runs a real sweep, `make test` runs the tests, in either order,
# any number of times. Each target sets up what it needs in .venv the first time: `sweep` the runtime
# only (no PyTorch, no Ray Tune), `test` adds the test extras; `venv` is everything a developer uses.
# pip prints errors only (-qq): a machine's index settings and setuptools' editable-install notice
# are not the user's sweep.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
RUNTIME = $(VENV)/.installed-runtime
TESTING = $(VENV)/.installed-test
CLUSTER = $(VENV)/.installed-cluster
BENCH   = $(VENV)/.installed-bench

.PHONY: venv sweep test test-fast bench clean

$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --quiet --upgrade pip
	$(BIN)/pip install --quiet --quiet -e .
	touch $@

$(TESTING): $(RUNTIME)
	$(BIN)/pip install --quiet --quiet -e '.[test]'
	touch $@

$(CLUSTER): $(RUNTIME)
	$(BIN)/pip install --quiet --quiet -e '.[cluster]'
	touch $@

$(BENCH): $(RUNTIME)
	$(BIN)/pip install --quiet --quiet -e '.[bench]'
	touch $@

venv: $(TESTING) $(CLUSTER) $(BENCH)

sweep: $(RUNTIME)
	$(BIN)/sweeper run sweeps/quickstart.yaml

test: $(TESTING)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(TESTING)
	$(BIN)/python -m pytest -q -m "not slow and not cluster" $(PYTEST_ARGS)

bench: $(TESTING) $(BENCH)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache mlflow.db mlflow.db.lock mlruns mlartifacts
