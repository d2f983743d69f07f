# Two entry points, each doing its own set-up in a local virtualenv (.venv):
#   make demo   synthetic IEMOCAP-layout corpus -> preprocessing -> RH-emo stages 1+2 -> SER nets -> results table
#   make test   the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
TEST_STAMP := $(VENV)/.test-installed
DEMO_CORPUS := data/synthetic/iemocap
DEMO_STORE := data/demo_store

.PHONY: demo test bench setup clean-demo

$(PY):
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(TEST_STAMP): $(RUNTIME_STAMP) tests/requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

setup: $(RUNTIME_STAMP)

demo: $(RUNTIME_STAMP)
	$(PY) -m rhemo.data.synthetic --layout iemocap --output $(DEMO_CORPUS) --utterances 400 --seed 0
	$(PY) preprocessing.py --dataset iemocap --input $(DEMO_CORPUS) --output $(DEMO_STORE)
	$(PY) exp_instance.py --ids [90,91] --last 3 --gpu_id 0

test: $(TEST_STAMP)
	$(PY) -m pytest -q tests

bench: $(RUNTIME_STAMP)
	for script in bench/bench_*.py; do $(PY) $$script --quick || exit 1; done

clean-demo:
	rm -rf data/synthetic data/demo_store results/90_demo_RHemo results/91_demo_SER
