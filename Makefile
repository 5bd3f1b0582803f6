# Two entry points, each sets up everything on a fresh machine first:
#   make demo   - the main job (lstmlab demo)
#   make test   - the test suite
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

$(BIN)/lstmlab: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	touch $(BIN)/lstmlab

.PHONY: setup demo test
setup: $(BIN)/lstmlab

demo: setup
	$(BIN)/lstmlab demo

test: setup
	bash scripts/system-deps.sh
	$(BIN)/python -m pytest
