# Two commands on a fresh machine:  `make train` (the main job) and `make test` (the suite).
# Both create .venv and install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch build installed first; pip then keeps it for descend's own range (torch>=2.4,<3).
TORCH ?= torch==2.14.1 torchvision==0.29.1
# The shared datasets when they sit beside the checkout; otherwise the default data root.
DESCEND_DATA ?= $(if $(wildcard ../shared/datasets),$(abspath ../shared/datasets),)
export DESCEND_DATA

.PHONY: install train test test-slow lint tutorial clean

$(BIN)/descend: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[all,test]'
	touch $@

install: $(BIN)/descend

train: install
	$(BIN)/descend train $(ARGS)

# The default suite leaves out the tests marked slow (those that read the real datasets).
test: install
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-slow: install
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# Runs every step of docs/tutorial/{en,zh}.md and writes their real output and figures back
# (tests/support/tutorial.py; needs the datasets, DESCEND_DATA).
tutorial: install
	$(BIN)/python -m tests.support.tutorial

clean:
	rm -rf $(VENV) runs .pytest_cache
