# Two commands on a fresh machine: `make demo` (set up + run the main job) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned for the CPU build; override e.g. `make TORCH_SPEC="torch==2.5.1" demo` for another build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/palme-run task=stack seed=3 hydra.run.dir=outputs/demo

test: setup
	$(BIN)/python -m pytest -q -x

bench: setup
	$(BIN)/python benchmarks/env_speed.py

clean:
	rm -rf $(VENV) outputs
