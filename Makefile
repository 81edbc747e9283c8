# Two commands for a fresh machine: `make run` and `make test`. Both build .venv first.
# On a CPU-only machine this installs the CPU build of torch; for a GPU, install a CUDA build
# of torch into .venv first (make TORCH=torch ... or pip install it yourself), then make run.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN     = $(VENV)/bin

.PHONY: run test lint install train evaluate bench clean

$(BIN)/invoke-shell: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(BIN)/invoke-shell

run: install
	$(BIN)/invoke-shell

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check invoke_shell tests benchmarks configs docs
	$(BIN)/ruff format --check invoke_shell tests benchmarks configs docs
	$(BIN)/mypy

train: install
	$(BIN)/python -m invoke_shell.models.tiny_shapes.train --out build/tiny_shapes_model  # from nothing; the shipped model is five runs (README)

evaluate: install
	$(BIN)/python -m invoke_shell.models.tiny_shapes.evaluate

# side-by-side figures against bare diffusers (give it a quiet machine; BENCH=--full_size adds SD 1.5's architecture)
bench: install
	$(BIN)/python benchmarks/vs_diffusers.py $(BENCH)
	$(BIN)/python benchmarks/memory.py $(BENCH)
	$(BIN)/python benchmarks/intermediates_overhead.py
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/gpu_recipe.py  # on a CUDA GPU: the recipe against stock diffusers

clean:
	rm -rf $(VENV) build .pytest_cache
