# Everyday targets. Each creates .venv on first use and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A CPU build of PyTorch keeps the AI extra small; pip elsewhere may fetch a multi-GB CUDA
# build: set TORCH_INDEX=https://download.pytorch.org/whl/cpu to get the CPU one (README).
TORCH ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: install install-dev install-ai run test lint format typecheck bench bench-full bench-instructions bench-profile bench-ablation bench-corpus bench-check check compose-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.dev: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.ai: $(VENV)/.dev
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) '$(TORCH)'
	$(BIN)/pip install --quiet -e '.[dev,ai]'
	touch $@

install: $(VENV)/.ai

run: $(VENV)/.ai
	$(BIN)/pipeline run examples/documents/ --output results.jsonl

test: $(VENV)/.ai
	$(BIN)/pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(VENV)/.dev
	$(BIN)/mypy

bench: $(VENV)/.dev
	$(BIN)/python bench/bench.py

bench-full: $(VENV)/.dev
	$(BIN)/python bench/bench.py --full

# Instructions per job, counted by valgrind (apt-get install valgrind): figures that do not move
# with the machine's load, and the throughput bound they set on 2 cores.
bench-instructions: $(VENV)/.dev
	$(BIN)/python bench/instructions.py

# Where the stage workers' CPU goes under load, by layer and function (py-spy, in the dev extra).
bench-profile: $(VENV)/.dev
	$(BIN)/python bench/worker_profile.py

# What the guarantees cost in the throughput case: copies of the engine with parts of
# commit.lua taken out, against the hand loop, with Redis's and the stages' CPU per job.
bench-ablation: $(VENV)/.dev
	$(BIN)/python bench/ablation.py

# The example pipeline on a folder of real documents from this machine (/usr/share/doc, the
# installed packages' descriptions) against a script calling the same stage functions.
bench-corpus: $(VENV)/.ai
	$(BIN)/python bench/corpus.py

# The tests of bench-instructions and bench-profile (pytest -m bench_tools): they need valgrind
# (apt-get install valgrind) and py-spy (dev extra), so `make test` and `make check` leave them out.
bench-check: $(VENV)/.dev
	$(BIN)/pytest -m bench_tools

compose-check:
	docker compose config --quiet 2>/dev/null || docker-compose config -q

check: lint typecheck test

clean:
	rm -rf $(VENV) .pipeline .pytest_cache .mypy_cache .ruff_cache results.jsonl *.egg-info
