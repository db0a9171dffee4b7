# rdet: set-up, the offline demo, the tests. Everything installs into the current Python
# environment (use a venv or conda env if you want it isolated).
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# pytest-xdist workers for the suite (one thread each; tests/conftest.py): one per core of the 2-core machines
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: setup demo test test-fast bench

setup:
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[test]'
	PYTHON=$(PYTHON) bash tools/install_detectron2.sh
	bash tools/install_data.sh

demo: setup
	$(PYTHON) -m rdet study

test: setup
	$(PYTHON) -m pytest -q $(XDIST) --durations=15

test-fast:  # the quick loop: everything but the integration tests (torchrun, detectron2 training, Slurm, packaging)
	$(PYTHON) -m pytest -q $(XDIST) -m "not slow"

bench:
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PYTHON) $$b || exit 1; done
