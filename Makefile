# Every target installs what it needs: a fresh clone needs only python3 (3.11+) and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
TOOLS := .tools
UV := $(TOOLS)/bin/uv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?= -n 2
WORKERS ?= 1
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install install-runtime run migrate seed test lint format fmt fuzz clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv>=0.5,<1"

# Serving needs the runtime dependencies only; tests, lint and benchmarks add the dev group.
# --inexact: serving after a test run keeps the dev tools rather than removing them.
$(VENV)/.installed-runtime: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --no-dev --inexact --python $(PYTHON)
	touch $@

$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	touch $@ $(VENV)/.installed-runtime

install-runtime: $(VENV)/.installed-runtime

install: $(VENV)/.installed

migrate: install-runtime
	$(BIN)/python -m app migrate

seed: migrate
	$(BIN)/python -m app seed-demo

run: seed
	HOST=$(HOST) PORT=$(PORT) WORKERS=$(WORKERS) $(BIN)/python -m app serve --no-migrate

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app

format fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: install lint
	./scripts/ensure-chromium
	./scripts/ensure-varnish
	$(BIN)/pytest $(PYTEST_ARGS)

# A long fuzzing run of every operation (the suite runs FUZZ_EXAMPLES=10 per operation).
FUZZ_EXAMPLES ?= 500
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/test_fuzz.py -s -o timeout=0

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache

# --- Benchmarks: never part of `make test` (README, "Performance") -------------------------
# bench-data fills $(BENCH_DATABASE_URL) ($DATABASE_URL if set, else local PostgreSQL `bench`);
# RESET=1 replaces existing data. bench* need PostgreSQL; wrk is installed when missing.
ARTICLES ?= 10000
COMMENTS ?= 100000
BENCH_DATABASE_URL ?= $(or $(DATABASE_URL),postgresql+asyncpg://postgres@127.0.0.1:5432/bench)

.PHONY: bench-data bench bench-growth bench-large bench-mixed bench-media

bench-data: install
	DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.generate \
		--articles $(ARTICLES) --comments $(COMMENTS) $(if $(RESET),--reset)

bench: install
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.run

bench-growth: install
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.run growth --sizes 10000,100000

bench-large: install
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.run growth \
		--sizes 10000,100000,1000000

# Reads while comments arrive (2, 20, 100/s), two instances on one database, a write flood.
bench-mixed: install
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.run mixed

# Renditions of a 24-megapixel JPEG, and uploads through the service; needs no PostgreSQL.
bench-media: install
	$(BIN)/python -m bench.run media
