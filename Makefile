# The two commands a newcomer runs; each sets up what it needs first (scripts/setup.sh).
VENV ?= .venv

.PHONY: demo test setup bench clean
demo: setup
	$(VENV)/bin/avcall demo

test: setup
	$(VENV)/bin/python -m pytest -q

setup:
	VENV=$(VENV) scripts/setup.sh

bench: setup
	$(VENV)/bin/avcall bench tracking -o bench/tracking.json

clean:
	rm -rf $(VENV) avcall-demo .pytest_cache
