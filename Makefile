# The two commands of the README. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench browser clean

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

test: $(STAMP) browser
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/run.py
	sh bench/setup-postfix.sh
	$(BIN)/python bench/send.py

clean:
	rm -rf $(VENV) out state .pytest_cache .hypothesis tests/artifacts
