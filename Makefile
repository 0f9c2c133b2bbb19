# `make run` and `make test` each bring a fresh machine to a working .venv by themselves.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system

.PHONY: all setup setup-ray run test test-all zoo bench clean

all: test

setup: $(STAMP) $(SYSTEM_STAMP)

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (the pinned torch/aihwkit wheels need Python 3.11); set PYTHON=..." >&2; exit 2; }
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# Optional: Ray, for running exact evaluations on a cluster (accuracy/backend.py, backend=ray).
# requirements-ray.txt is constrained by requirements.txt, so no pinned package (torch 2.13.0 CPU,
# numpy, ...) changes; without Ray everything works as before.
setup-ray: setup
	$(PY) -m pip install --quiet -r requirements-ray.txt

$(SYSTEM_STAMP): scripts/system-deps.sh
	@[ -d $(VENV) ] || $(PYTHON) -m venv $(VENV)
	bash scripts/system-deps.sh
	@touch $@

# The main job, end to end on the embedded defaults: train the default policy, then map the
# held-out ResNet-8 with it at one point, beside LionHeart greedy (evaluate.py's defaults; it picks the
# newest run's best model).
run: setup
	$(PY) train.py
	$(PY) evaluate.py
	@echo "TensorBoard: $(VENV)/bin/tensorboard --logdir outputs/train"

# The default suite (slow tests excluded); `make test-all` includes them.
test: setup
	$(PY) -m pytest -q -m "not slow"

test-all: setup
	$(PY) -m pytest -q

# Every benchmark but the comparison (the oracle's takes most of the time), then the README tables.
# The per-layer sensitivity report of the README (gpt, 4 test chips): .venv/bin/python -m cli.sensitivity network=gpt
# The comparison (hours on 2 cores; resumable per network) uses the committed policies/default.zip:
#   .venv/bin/python -m bench.bench_compare
# then the certificate's checks on its rows (bench_image_gap, bench_recertify --failing,
# bench_certificate_coverage; each reads one network's certified rows from compare.json).
bench: setup
	$(PY) -m bench.bench_cost
	$(PY) -m bench.bench_env
	$(PY) -m bench.bench_surrogate
	$(PY) -m bench.bench_oracle
	$(PY) -m bench.bench_chip_spread
	$(PY) -m bench.bench_sensitivity
	$(PY) -m bench.bench_assumptions
	$(PY) -m bench.bench_backend
	$(PY) -m bench.bench_training
	$(PY) -m bench.bench_training --load 2 --name training_threads_busy
	$(PY) scripts/update_readme.py

# Retrain the network zoo (about an hour on 2 cores); checkpoints are committed.
zoo: setup
	$(PY) -m cli.train_zoo

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
