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

# The web page tests drive the system Chromium (Debian package) through Playwright. Installing
# it says one line; apt's output goes to .venv/chromium-install.log.
CHROMIUM_LOG := $(VENV)/chromium-install.log

chromium:
	@command -v chromium >/dev/null || { \
		echo "Installing Debian's chromium for the web page tests (log: $(CHROMIUM_LOG))..."; \
		mkdir -p $(VENV); \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; } \
			>$(CHROMIUM_LOG) 2>&1 \
		|| echo "warning: cannot install chromium (see $(CHROMIUM_LOG)); the web page tests will be skipped"; }

# Two test processes: most tests wait on crawl subprocesses and servers, not on the CPU. A test
# file runs whole in one process (--dist loadfile), so its module-scoped crawls are made once.
test: $(STAMP) chromium
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(VENV)/bin/python -m bench
