# Two commands on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO := runs/demo
# Compiled XLA programs are cached on disk, so the second sample.py call does not recompile.
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.cache/xla
export PYTHONUNBUFFERED := 1

.PHONY: install demo test bench clean

$(VENV)/installed: requirements.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/test-installed: $(VENV)/installed requirements-test.txt
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

install: $(VENV)/installed

# Trains a tiny VAE, diffusion model and CLIP model on the bundled LUDB data (CPU, minutes),
# writes 4 ECGs for each of two reports, then evaluates on the test split (DDPM, 1000 steps).
demo: install
	$(PY) train.py --config configs/tiny.py --workdir $(DEMO)
	$(PY) sample.py --workdir $(DEMO) --text "Sinus bradycardia" --age 60 --sex F --hr 50 \
	    --num 4 --sampler ddpm --seed 0 --out $(DEMO)/samples/sinus_bradycardia
	$(PY) sample.py --workdir $(DEMO) --text "Atrial fibrillation" \
	    --text "Electric axis of the heart: left axis deviation" --age 72 --sex M --hr 110 \
	    --num 4 --sampler ddpm --seed 1 --out $(DEMO)/samples/atrial_fibrillation
	$(PY) evaluate.py --workdir $(DEMO) --split test --sampler ddpm --seed 0
	@echo "demo done: curves $(DEMO)/training_curves.png, ECGs under $(DEMO)/samples/, evaluation $(DEMO)/evaluation/test/report.md"

test: $(VENV)/test-installed
	$(PY) -m pytest -q -n 2 tests

bench: install
	$(PY) benchmarks/sampling.py --batch 1 16 64 --out benchmarks/results/sampling_cpu.json
	$(PY) benchmarks/evaluation.py --num 1000 --out benchmarks/results/evaluation_cpu.json

clean:
	rm -rf $(DEMO) data/tfds .cache
