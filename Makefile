# Two commands on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO := runs/demo
# Compiled XLA programs are cached on disk, so the second sample.py call does not recompile.
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.cache/xla
export PYTHONUNBUFFERED := 1

.PHONY: install demo test bench gpu-wheels gpu-check gpu-training-inputs clean

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

# 1. Samples the shipped pretrained model (no training) for two reports.
# 2. Shows a short training run of the tiny config on the bundled LUDB data, CLIP model included.
# 3. Evaluates the shipped model on LUDB's test split at its default sampler (DDIM 50, eta 3),
#    scored with that CLIP model; the two-sample tests (--two_sample) would take about 1 min more.
demo: install
	$(PY) sample.py --text "Sinus bradycardia" --age 60 --sex F --hr 50 \
	    --num 4 --seed 0 --out $(DEMO)/pretrained_samples/sinus_bradycardia
	$(PY) sample.py --text "Atrial fibrillation" --age 72 --sex M --hr 110 \
	    --num 4 --seed 1 --out $(DEMO)/pretrained_samples/atrial_fibrillation
	$(PY) train.py --config configs/tiny.py --workdir $(DEMO)
	$(PY) sample.py --workdir $(DEMO) --text "Sinus bradycardia" --age 60 --sex F --hr 50 \
	    --num 4 --sampler ddim --seed 0 --out $(DEMO)/samples/sinus_bradycardia
	$(PY) evaluate.py --clip_workdir $(DEMO) --dataset ludb --split test --seed 0 \
	    --notwo_sample --out $(DEMO)/pretrained_evaluation
	@echo "demo done: shipped model's ECGs under $(DEMO)/pretrained_samples/, its evaluation $(DEMO)/pretrained_evaluation/report.md; tiny run's curves $(DEMO)/training_curves.png and ECGs $(DEMO)/samples/"

test: $(VENV)/test-installed
	$(PY) -m pytest -q -n 2 --dist worksteal tests

# Throughput on whatever backend JAX sees (limited batches: a CPU), then ours against the
# reference architecture in PyTorch, same weights and device. PyTorch comes with the test extras.
bench: $(VENV)/test-installed
	$(PY) benchmarks/throughput.py --batch 1 16 64 --max_call_s 20 --train_batches 8 \
	    --out benchmarks/results/throughput_cpu.json
	$(PY) benchmarks/pytorch_reference/side_by_side.py --batch 1 64 \
	    --out benchmarks/results/side_by_side_cpu.json
	$(PY) benchmarks/evaluation.py --num 1000 --out benchmarks/results/evaluation_cpu.json

# Wheels of what the GPU machine lacks (requirements-gpu.txt), for CPython 3.12 manylinux x86_64,
# into build/gpu-wheels/: carry that folder with the repository (docs/benchmarks.md).
gpu-wheels:
	$(PYTHON) benchmarks/gpu_wheels.py

# The whole GPU check in one command (on the GPU machine: python benchmarks/gpu_check.py);
# here, on the CPU, its micro-size smoke run.
gpu-check: $(VENV)/test-installed
	$(PY) benchmarks/gpu_check.py --smoke

# What benchmarks/gpu_training.py needs on the GPU machine (docs/benchmarks.md): the shipped
# VAE's latents of a PTB-XL 1.0.3 download, PTBXL=/path/to/ptb-xl/1.0.3 (45 s), and the wheels.
# Carry runs/gpu_latents/latents and build/gpu-wheels.
gpu-training-inputs: install gpu-wheels
	$(if $(PTBXL),,$(error set PTBXL to a PTB-XL 1.0.3 download, e.g. make gpu-training-inputs PTBXL=/data/ptb-xl/1.0.3))
	$(PY) train.py --config configs/gpu_paper_unet.py --workdir runs/gpu_latents --stage latents \
	    --config.data.manual_dir=$(PTBXL)+

clean:
	rm -rf $(DEMO) data/tfds .cache build
