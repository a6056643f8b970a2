# Value Chain CRM: developer entry points. Needs only python3 and make.
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv run test migrate bench clean lock

venv: $(STAMP)

$(VPY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.lock pyproject.toml | $(VPY)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -r requirements.lock
	$(VENV)/bin/pip install --no-deps -e .
	touch $(STAMP)

run: venv
	$(VENV)/bin/valuechain run

test: venv
	$(VPY) -m pytest -q -p no:cacheprovider

migrate: venv
	$(VENV)/bin/valuechain migrate

bench: venv
	$(VPY) -m bench

clean:
	rm -rf var

# Re-pin requirements.lock from the current venv (dev-only extras left out).
lock:
	{ echo "# Pinned runtime + test dependencies (pip freeze of .venv, without dev extras such as pyinstrument)."; \
	  echo "# Regenerate: make lock"; \
	  $(VENV)/bin/pip freeze --exclude-editable | grep -viE '^(pyinstrument|valuechain-crm)([=@ ]|$$)'; } > requirements.lock
