# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-deps lint architecture typecheck docs pytest unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python demo/demo.py

# System packages first (test-deps), then every check.
test: test-deps lint architecture typecheck docs pytest

# System packages the tests need (openssh-server, tmux, iproute2, ...); needs root or sudo.
test-deps:
	bash .ci/run --deps-only

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Imports only point down (import-linter contracts in pyproject.toml), and no function is
# above radon grade C (cyclomatic complexity 20).
architecture: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/xenon --max-absolute C --max-modules B --max-average A oneoff

typecheck: $(STAMP)
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet --site-dir build/site

pytest: $(STAMP)
	$(BIN)/pytest

# The unit layer alone: no sshd, seconds.
unit: $(STAMP)
	$(BIN)/pytest tests/unit

bench: $(STAMP)
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/stdin.py
	$(BIN)/python bench/fanout.py

clean:
	rm -rf $(VENV) build .demo .mypy_cache .ruff_cache .pytest_cache
