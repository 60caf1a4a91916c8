# The two commands of the README. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench browser postfix postgres corpora clean

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

# flufl.bounce's own test corpus (117 real bounces and the addresses each must yield) ships in its
# sdist, not its wheel: tests/test_bounce_corpus.py reads it from here, the version installed.
CORPORA := $(VENV)/corpora
# The test corpora other projects collected (real bounces; feedparser's feeds and date forms)
# come from the sdists of the very versions installed, so their expectations match the code.
corpora: $(STAMP)
	@for dist in flufl.bounce feedparser; do \
		version=$$($(BIN)/python -c "import importlib.metadata as m; print(m.version('$$dist'))"); \
		folder=$(CORPORA)/$$(echo $$dist | tr . _)-$$version; \
		if [ ! -d $$folder/tests ]; then \
			mkdir -p $(CORPORA) && \
			$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: --dest $(CORPORA) "$$dist==$$version" && \
			tar -xzf $(CORPORA)/$$(echo $$dist | tr . _)-$$version.tar.gz -C $(CORPORA) || exit 1; \
		fi; \
	done

# pytest-xdist with one worker more than the machine has cores: about a third of the suite's time
# is spent waiting (on digest processes, servers, leases), and a third worker fills it (2 cores:
# 147 s with two workers, 129-135 s with three). A test file runs alone with plain pytest.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))
test: $(STAMP) browser postfix postgres corpora
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

bench: $(STAMP) postfix
	$(BIN)/python bench/run.py
	$(BIN)/python bench/send.py
	$(BIN)/python bench/workers.py

clean:
	rm -rf $(VENV) out state .pytest_cache .hypothesis tests/artifacts
