# calfwd: every target runs as root on Debian 12 or Fedora/RHEL and installs what it needs.
PYTHON ?= /usr/bin/python3
PYTEST ?= $(PYTHON) -m pytest
# The distro's mypy (Debian's mypy, Fedora's python3-mypy): its settings are pyproject.toml's.
MYPY ?= $(PYTHON) -m mypy

.PHONY: test unit typecheck deps demo bench rpm clean

test: deps typecheck
	$(PYTEST) -q tests

unit: typecheck
	$(PYTEST) -q tests/unit

# The drivers' protocols (calfwd/drivers/__init__.py) against the drivers and their callers.
typecheck:
	$(MYPY)

deps:
	bash tests/install-deps.sh

demo: deps
	$(PYTHON) tests/demo.py

# The incident on firewalld 0.9.3, 1.3 and 2.3 (Debian's packages, fetched into
# /var/cache/calfwd-lab) with both backends; `make test` runs one case per behaviour.
.PHONY: test-versions-full
test-versions-full: deps
	CALFWD_LAB_FIREWALLD=all $(PYTEST) -q tests/integration/test_firewalld_versions.py

# calfwd under a real systemd as PID 1 (a cached Debian root; `make test` runs it too).
.PHONY: systemd-test
systemd-test: deps
	$(PYTEST) -q tests/integration/test_real_systemd.py

clean:
	rm -rf build dist .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +

# --- packaging (see packaging/ and docs/packaging.md) ------------------------------------
RPM_TOPDIR ?= $(CURDIR)/build/rpm
MAN_DIR ?= $(CURDIR)/build/man
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' calfwd/__init__.py)
# Debian's rpm has an empty rpmdb, so BuildRequires cannot be checked there.
RPMBUILD_NODEPS := $(shell rpm -q rpm >/dev/null 2>&1 || echo --nodeps)
RPM_SOURCES := calfwd etc systemd packaging README.md docs LICENSE pyproject.toml

.PHONY: man
man:
	$(PYTHON) packaging/manpages.py --outdir $(MAN_DIR)

rpm:
	mkdir -p $(RPM_TOPDIR)/SOURCES $(RPM_TOPDIR)/SPECS
	rm -f $(RPM_TOPDIR)/RPMS/noarch/calfwd-*.rpm $(RPM_TOPDIR)/SRPMS/calfwd-*.src.rpm
	tar --create --gzip --file $(RPM_TOPDIR)/SOURCES/calfwd-$(VERSION).tar.gz \
	    --exclude=__pycache__ --exclude='*.pyc' --sort=name --owner=0 --group=0 --numeric-owner \
	    --transform 's,^,calfwd-$(VERSION)/,' $(RPM_SOURCES)
	cp packaging/macros.systemd-fallback packaging/macros.python3-fallback \
	    packaging/macros.debian-rpm-fixes $(RPM_TOPDIR)/SOURCES/
	cp packaging/calfwd.spec $(RPM_TOPDIR)/SPECS/
	rpmbuild -ba $(RPMBUILD_NODEPS) --define '_topdir $(RPM_TOPDIR)' $(RPM_TOPDIR)/SPECS/calfwd.spec
	@ls -1 $(RPM_TOPDIR)/RPMS/noarch/calfwd-*.rpm $(RPM_TOPDIR)/SRPMS/calfwd-*.src.rpm

# --- soak and benchmarks (see bench/README.md and docs/benchmarks.md) ----------------------
# The full soak: 300 firewalld reloads, 20 restarts, 5 SIGKILLs under a running calfwd (~5 min).
# CI runs the same test with reduced counts.
.PHONY: soak
soak: deps
	CALFWD_SOAK=full $(PYTEST) -q -s tests/integration/test_soak.py

# Every path of the two-node cluster lab after every firewalld/calfwd step, for each
# encapsulation x uplink bound/unbound x default zone public/drop (~20 min); tests/CLUSTER-MATRIX.md
# holds a measured copy. CI runs tests/integration/test_cluster.py, one case per behaviour.
.PHONY: cluster-matrix
# FIREWALLD=all: also on Debian 11's 0.9.3 and Debian 13's 2.3 (or 12's 1.3), fetched once.
# CNI=canal,flannel (or all): RKE2's Canal and k3s's flannel, uplink x default zone each.
FIREWALLD ?= own
CNI ?= calico
cluster-matrix: deps
	$(PYTHON) tests/cluster_matrix.py --all --cni $(CNI) --firewalld $(FIREWALLD) \
	    --json build/cluster-matrix.json --markdown build/cluster-matrix.md

# All benchmarks side by side in one run (~11 min): bench/results/<date>.json + Markdown tables.
bench: deps
	$(PYTHON) bench/run.py
