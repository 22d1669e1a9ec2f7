# Everything runs in .venv, created and filled from pyproject.toml on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint demo bench bench-compare schema clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements/reference.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench,explore,eval]'
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/reference.txt
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The whole suite, benchmarks included but untimed (--benchmark-disable runs each once).
test: $(STAMP) lint
	$(BIN)/pytest tests benchmarks --benchmark-disable -q -p no:cacheprovider

demo: $(STAMP)
	$(BIN)/lyra run experiments/snake_pqmf.json

# Saves to .benchmarks/; `lyra bench --write README.md` then refreshes the README's table.
bench: $(STAMP)
	$(BIN)/pytest benchmarks --benchmark-only --benchmark-autosave -q

bench-compare: $(STAMP)
	$(BIN)/pytest benchmarks --benchmark-only --benchmark-compare \
		--benchmark-compare-fail=median:10% -q

schema: $(STAMP)
	$(BIN)/lyra schema --builtins-only -o schemas/

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .benchmarks *.egg-info
