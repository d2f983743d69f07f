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

# make paper-mini: the whole paper table's wiring on tiny synthetic corpora in the four layouts (every variant, the
# run references, 2 seeds, the paper table and its chart), with the shipped experiment files unchanged: stores
# redirected with --store_root, budgets shrunk with one --override. Results: results/paper_mini/.
PAPER_MINI := data/paper_mini
PAPER_MINI_RESULTS := results/paper_mini
PAPER_MINI_SMALL := "num_epochs": 1, "model_hidden_size": 16
PAPER_MINI_RUN = $(PY) exp_instance.py --store_root $(PAPER_MINI)/stores --output_folder $(PAPER_MINI_RESULTS)

.PHONY: paper-mini
paper-mini: $(RUNTIME_STAMP)
	for corpus in iemocap ravdess emodb tess; do \
	  utterances=12; [ $$corpus = iemocap ] && utterances=20; \
	  $(PY) -m rhemo.data.synthetic --layout $$corpus --output $(PAPER_MINI)/corpora/$$corpus \
	    --utterances $$utterances --max-seconds 3.5 --seed 0 --quiet && \
	  $(PY) preprocessing.py --dataset $$corpus --input $(PAPER_MINI)/corpora/$$corpus \
	    --output $(PAPER_MINI)/stores || exit 1; \
	done
	$(PAPER_MINI_RUN) --ids [1] --seeds 1,2 --override '{$(PAPER_MINI_SMALL)}'
	$(PAPER_MINI_RUN) --ids [2,3] --seeds 1,2 --override '{$(PAPER_MINI_SMALL), "r2he_model_path": {"experiment": 1, "run": 2}}'
	$(PAPER_MINI_RUN) --ids [5,6,7] --seeds 1,2 --override '{$(PAPER_MINI_SMALL)}'
	$(PY) exp_instance.py --paper_table --output_folder $(PAPER_MINI_RESULTS)
