# Everything runs in .venv, created and filled from pyproject.toml on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv system-packages test lint demo bench bench-compare bench-quality schema clean gpu-check \
	gpu-check-dry gpu-wheels

venv: $(STAMP)

$(STAMP): pyproject.toml requirements/reference.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench,explore,eval,docs]'
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/reference.txt
	touch $(STAMP)

# Debian's sound packages (the corpus) and Chromium (browser tests): installed as root, else one
# line says what is missing and how to add it; never fails (those tests then skip with that line).
system-packages:
	@tools/system_packages.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The whole suite, benchmarks included but untimed (--benchmark-disable runs each once).
test: $(STAMP) system-packages lint
	$(BIN)/pytest tests benchmarks --benchmark-disable -q -p no:cacheprovider --durations=15

# The demo trains on real audio: the corpus Debian's sound packages give (`lyra data corpus`),
# built once; without those packages, on synthetic audio, saying so. DEMO_ARGS adds options to
# `lyra run`, e.g. DEMO_ARGS="--set training.steps=10" for a quick look.
CORPUS := data/corpus
DEMO_ARGS ?=
demo: $(STAMP) system-packages
	@if test -f $(CORPUS)/manifest.json || { tools/system_packages.sh --check sound >/dev/null && \
		$(BIN)/lyra data corpus $(CORPUS); }; then \
		$(BIN)/lyra run experiments/snake_pqmf.json $(DEMO_ARGS) \
			--set 'data.dataset={"type": "audio_folder", "paths": ["$(CORPUS)/train"]}'; \
	else \
		echo "no real-audio corpus (see above): the demo trains on synthetic audio"; \
		$(BIN)/lyra run experiments/snake_pqmf.json $(DEMO_ARGS); \
	fi

# Saves to .benchmarks/; `make bench-compare` (or `lyra bench --compare`) compares a later run with it.
bench: $(STAMP)
	$(BIN)/pytest benchmarks --benchmark-only --benchmark-autosave -q

bench-compare: $(STAMP)
	$(BIN)/pytest benchmarks --benchmark-only --benchmark-compare \
		--benchmark-compare-fail=median:10% -q

# Held-out quality after 3 and 10 CPU-minutes on the corpus's music (about 40 minutes here).
bench-quality: $(STAMP) system-packages
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m benchmarks.quality_small_data

# The GPU check (README: GPU check): on the GPU machine with its own python3 and the wheels in
# .whl/ (`make gpu-wheels` here); `gpu-check-dry` runs it here on the CPU at tiny sizes.
GPU_CHECK_OUT ?= gpu-check
gpu-check:
	$(PYTHON) tools/gpu_check.py $(if $(OUT),,--out $(GPU_CHECK_OUT))

gpu-check-dry: $(STAMP)
	$(BIN)/python tools/gpu_check.py --dry-run --out $(GPU_CHECK_OUT)

gpu-wheels: $(STAMP)
	tools/fetch_gpu_wheels.sh

schema: $(STAMP)
	$(BIN)/lyra schema --builtins-only -o schemas/

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .benchmarks .bench-quality *.egg-info

# The documentation site (docs/, built into build/docs/); a broken link or a missing page fails.
.PHONY: docs docs-serve
docs: $(STAMP)
	$(BIN)/mkdocs build --strict -f docs/config/mkdocs.yml

docs-serve: $(STAMP)
	$(BIN)/mkdocs serve -f docs/config/mkdocs.yml
