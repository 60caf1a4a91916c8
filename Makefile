# The two commands of the README. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench browser postfix postgres clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/digest demo

# The browser tests drive Debian's Chromium; browser_setup.sh installs it when missing.
browser:
	bash tests/browser_setup.sh

# The tests start throwaway PostgreSQL clusters (tests/postgres.py); postgres_setup.sh installs the server when missing.
postgres:
	bash tests/postgres_setup.sh

# Postfix's smtp-sink and smtp-source: the DKIM-through-a-real-MTA test and bench/send.py use them.
postfix:
	sh bench/setup-postfix.sh

# Two cores on CI: one pytest worker per core (pytest-xdist); a test file runs alone with plain pytest.
test: $(STAMP) browser postfix postgres
	$(BIN)/python -m pytest -n auto

bench: $(STAMP) postfix
	$(BIN)/python bench/run.py
	$(BIN)/python bench/send.py
	$(BIN)/python bench/workers.py

clean:
	rm -rf $(VENV) out state .pytest_cache .hypothesis tests/artifacts
