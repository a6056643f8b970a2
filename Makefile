# Value Chain CRM: developer entry points. Needs only python3 (>= 3.11, with venv) and make.
#
#   make run       the whole suite (NATS, the five services, the gateway) on this machine
#   make test      the test suite (SQLite; set VALUECHAIN_TEST_POSTGRES_URL for PostgreSQL)
#   make lint      ruff (lint and format check) and mypy, as CI runs them
#   make migrate   every service's database to the latest schema
#   make migration SERVICE=<name> MESSAGE="..."   a new revision from the service's models
#   make bench     the benchmarks under bench/
#   make clean     forget all local data (var/)
#   make lock      re-pin requirements.lock from .venv
PYTHON      ?= python3
VENV        := .venv
VPY         := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist workers (0: none, one process). With 2, every test that starts a whole suite
# (tests/e2e, tests/contract) runs on one worker, in order, and the in-process tests on the other
# meanwhile (tests/conftest.py's scheduler): 5:38 here against 11:27 in one process.
TEST_WORKERS ?= 2

.PHONY: venv run test lint migrate migration bench clean lock

venv: $(STAMP)

# Only when the venv is missing (or has no pip, e.g. an earlier failed attempt).
$(VENV)/bin/pip:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python >= 3.11 is needed: run 'make PYTHON=python3.11 ...'" >&2; exit 1; }
	@echo "$(PYTHON) -m venv $(VENV)"
	@$(PYTHON) -m venv $(VENV) || \
	  { echo "'$(PYTHON) -m venv' failed: on Debian/Ubuntu install python3-venv" >&2; exit 1; }

# Re-installs only when requirements.lock or pyproject.toml changed. `pip check`
# also fails when pyproject.toml gained a dependency that requirements.lock lacks.
$(STAMP): requirements.lock pyproject.toml | $(VENV)/bin/pip
	$(VPY) -m pip install --disable-pip-version-check --upgrade pip
	$(VPY) -m pip install --disable-pip-version-check -r requirements.lock
	$(VPY) -m pip install --disable-pip-version-check --no-deps -e .
	$(VPY) -m pip check
	touch $(STAMP)

run: venv
	$(VENV)/bin/valuechain run

test: venv
	$(VPY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) $(PYTEST_ARGS)

# Every check runs even when an earlier one fails, so one run shows all findings.
lint: venv
	@status=0; \
	echo "ruff check"; $(VENV)/bin/ruff check . || status=1; \
	echo "ruff format --check"; $(VENV)/bin/ruff format --check . || status=1; \
	echo "mypy"; $(VENV)/bin/mypy || status=1; \
	exit $$status

migrate: venv
	$(VENV)/bin/valuechain migrate

# The variables are checked by the command too; quoting keeps a MESSAGE with spaces whole.
migration: venv
	$(VENV)/bin/valuechain migration '$(SERVICE)' '$(MESSAGE)'

bench: venv
	$(VPY) -m bench

clean:
	rm -rf var

# Re-pin requirements.lock from the current venv (dev-only extras left out).
lock:
	{ echo "# Pinned runtime + test dependencies (pip freeze of .venv, without dev extras such as pyinstrument)."; \
	  echo "# Regenerate: make lock"; \
	  $(VPY) -m pip freeze --exclude-editable | grep -viE '^(pyinstrument|valuechain-crm)([=@ ]|$$)'; } > requirements.lock
