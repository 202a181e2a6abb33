# erasekit: `make demo` runs the main job on the testbed, `make test` runs the test suite.
# Both create .venv and install everything first (torch 2.13.0 CPU, then erasekit and its pins).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# two cores: one OpenMP pool, spin-waiting off (see DEVELOPERS' notes on CPU threads)
export OMP_WAIT_POLICY ?= PASSIVE
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/erasekit demo --out runs/demo

test: install
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/python benchmarks/generation.py

clean:
	rm -rf $(VENV) runs .pytest_cache
