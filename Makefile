# `make demo` and `make test` work on a fresh machine: each sets up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export KERAS_BACKEND := jax

.PHONY: demo evaluate-demo test lint typecheck bench setup setup-test clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip

# the compiled CPU kernels are rebuilt (by pip's editable install) whenever their source changes
KERNELS := setup.py losskit/_backends/_cpu.c

# pip install -e '$(1)': every editable install rebuilds the kernels; in a venv that has jaxlib (from
# the test extras) the build must see it to keep the XLA FFI target (below), so it runs without isolation
EDITABLE = if $(BIN)/python -c "import jaxlib, setuptools as s; assert int(s.__version__.split('.')[0]) >= 77" \
	2>/dev/null; then $(BIN)/pip install -qq --no-build-isolation -e '$(1)'; else $(BIN)/pip install -qq -e '$(1)'; fi

$(VENV)/.core: pyproject.toml $(KERNELS) | $(BIN)/python
	$(call EDITABLE,.)
	touch $@

# the test extras bring jax: the kernels are built once more where the build sees jaxlib, so that
# they also export the XLA FFI target of the embedding losses (setup.py; without it JAX arrays take
# the host callback, which the suite then tests instead)
$(VENV)/.test: pyproject.toml $(KERNELS) | $(BIN)/python
	$(BIN)/pip install -qq -e '.[test]'
	$(BIN)/pip install -qq "setuptools>=77" && $(BIN)/pip install -qq --no-build-isolation --no-deps -e .
	touch $(VENV)/.core $@

setup: $(VENV)/.core
setup-test: $(VENV)/.test

# the demo's loss plot needs matplotlib (the optional extra "plot"); without it the demo still runs
$(VENV)/.demo: pyproject.toml | $(VENV)/.core
	($(call EDITABLE,.[plot])) && touch $@ || echo "(matplotlib could not be installed: the demo runs without its plot)"

demo: $(VENV)/.core $(VENV)/.demo
	$(BIN)/python examples/tutorial.py

# the evaluation demo needs the "data" extra (pyarrow, pandas, dask, distributed, matplotlib, rich)
$(VENV)/.data: pyproject.toml | $(VENV)/.core
	$(call EDITABLE,.[data])
	touch $@

evaluate-demo: $(VENV)/.core $(VENV)/.data
	$(BIN)/python examples/evaluate_demo.py

lint: $(VENV)/.test
	$(BIN)/ruff check losskit tests benchmarks examples
	$(BIN)/mypy

test: $(VENV)/.test lint
	$(BIN)/python -m pytest -n 2 -q

bench: $(VENV)/.test
	$(BIN)/python benchmarks/accuracy.py
	$(BIN)/python benchmarks/catalog.py
	$(BIN)/python benchmarks/speed.py

clean:
	rm -rf $(VENV) build *.egg-info
