# calfwd: every target runs as root on Debian 12 or Fedora/RHEL and installs what it needs.
PYTHON ?= /usr/bin/python3
PYTEST ?= $(PYTHON) -m pytest

.PHONY: test unit deps demo bench rpm clean

test: deps
	$(PYTEST) -q tests

unit:
	$(PYTEST) -q tests/unit

deps:
	bash tests/install-deps.sh

demo: deps
	$(PYTHON) -m tests.demo

clean:
	rm -rf build dist .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
