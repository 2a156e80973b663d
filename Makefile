# Local development runs what CI runs: `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install tools demo test lint format bench chaos clean

$(BIN)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# Chromium and promtool for the tests, from the system's packages (one line if it cannot).
tools:
	@devtools/system-tools

# Both lanes end to end on this machine: embedded PostgreSQL, the sandbox playing GitHub,
# the Actions runner and Inngest; a realistic mix of jobs run to completion.
demo: install
	$(BIN)/python bin/demo

# One pytest worker per CPU, each with its own embedded PostgreSQL (.jobstore/test-gwN),
# stopped when the suite ends.
test: install tools
	$(BIN)/pytest -n auto

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every scenario at its defaults, each ending with how long it took (about 25 minutes in all
# on a 2-CPU machine; see `bin/bench SCENARIO --help`).
bench: install
	$(BIN)/python bin/bench store --json
	$(BIN)/python bin/bench projections --json
	$(BIN)/python bin/bench worker --json
	$(BIN)/python bin/bench planner --json
	$(BIN)/python bin/bench capture --json
	$(BIN)/python bin/bench latency --json
	$(BIN)/python bin/bench api --json
	$(BIN)/python bin/bench budget --json
	$(BIN)/python bin/bench freshness --json
	$(BIN)/python bin/bench fleet --json

# Stops the embedded servers (the scripts' and the tests') and removes what was built.
clean:
	-@for home in .jobstore .jobstore/test .jobstore/test-gw*; do \
		[ -d "$$home/data" ] && JOBSTORE_HOME=$$home $(BIN)/python bin/db stop >/dev/null 2>&1; \
	done; true
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

# Faults a user meets (PostgreSQL restarted, read-only, connections cut; GitHub refusing;
# a revoked token; SIGTERM mid-job; ...), driven through the scripts as real processes.
chaos: install
	$(BIN)/python bin/chaos
