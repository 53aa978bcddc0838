# The two commands of the README, plus benchmarks. Each target creates .venv and
# installs the project first; Redis is started privately when none answers at REDIS_URL.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WITH_REDIS := $(BIN)/python -m tools.redis_runtime --

.PHONY: demo test venv lint bench-ingest bench-e2e chaos clean

$(STAMP): pyproject.toml constraints.txt
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (set PY=python3.11)")'
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## The main job: the whole system on the embedded default (sandbox, Redis, web, workers).
demo: $(STAMP)
	$(WITH_REDIS) $(BIN)/lifecycle demo $(DEMO_ARGS)

## The whole test suite.
test: $(STAMP)
	$(WITH_REDIS) $(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check rules worker webhooks sandbox tools tests
	$(BIN)/mypy

bench-ingest: $(STAMP)
	$(WITH_REDIS) $(BIN)/python -m bench.ingest $(BENCH_ARGS)

bench-e2e: $(STAMP)
	$(WITH_REDIS) $(BIN)/python -m bench.e2e $(BENCH_ARGS)

chaos: $(STAMP)
	$(WITH_REDIS) $(BIN)/python -m bench.chaos $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
