# Two commands on a fresh machine:
#   make demo   install into .venv, then crawl the offline mirror into the default SQLite database
#   make test   install into .venv, then run the whole test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dtmon demo

# The web page tests drive the system Chromium (Debian package) through Playwright.
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium) \
		|| echo "warning: cannot install chromium; the web page tests will be skipped"

test: $(STAMP) chromium
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(VENV)/bin/python -m bench
