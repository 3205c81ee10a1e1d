PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[gui,train,test]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/captioner-gui

test: $(STAMP)
	$(BIN)/ruff check captioner gui training tests benchmarks scripts
	OMP_NUM_THREADS=1 QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check captioner gui training tests benchmarks scripts
	$(BIN)/ruff format --check captioner gui training tests benchmarks scripts

format: $(STAMP)
	$(BIN)/ruff format captioner gui training tests benchmarks scripts
	$(BIN)/ruff check --fix captioner gui training tests benchmarks scripts

clean:
	rm -rf $(VENV) build *.egg-info
