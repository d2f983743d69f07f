"""Run numbered experiment files: ``python3 exp_instance.py --ids [1] --first 1 --last 2 --gpu_id 0``.

Reads ``experiments/<N>_<name>.txt`` (JSON: ``global_parameters`` plus numbered runs; a run's own keys override
the globals), validates every selected run, then trains each run and fold in order with the script the run
names. Results: ``results/<name>/<run>/fold<k>/`` and ``results/<name>/<name>_results.xlsx``.
See ``python3 exp_instance.py --help`` and :mod:`rhemo.experiments.launcher`.
"""
import sys

from rhemo.experiments.launcher import main

if __name__ == "__main__":
    sys.exit(main())
