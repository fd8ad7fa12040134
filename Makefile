# Two commands do all the set-up on a fresh machine:
#   make demo   -> creates .venv if missing, installs ar-envs, runs the two-branch horizon sweep
#   make test   -> same set-up, then the default (fast) test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench benchmark-reference install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ar-envs demo --out results/demo.jsonl --plots results

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/ar-envs bench

# regenerate the shipped reference results of the benchmark suite (see README, "The benchmark")
REFERENCE := agents/evaluation/suites/arb-v1-reference.jsonl
benchmark-reference: $(STAMP)
	rm -f $(REFERENCE)
	$(BIN)/ar-envs benchmark --reference --workers 2 --out $(REFERENCE) --plot results/arb-v1-reference.png

clean:
	rm -rf $(VENV) results build *.egg-info
