"""Shared pytest setup.

- The repo root goes on sys.path so `import calfwd` works without installing anything,
  and tests/ so the lab imports as `lab` (`from lab import Lab`). Import it only under
  that name: `tests.lab` would be a second copy of every module.
- `lab`: a freshly built lab per test (see tests/lab/__init__.py); firewalld is not
  started. Skipped, with the reason, when not root or when a required tool is missing.
- `lab_versions`: the same lab, once per (firewalld, backend) case of CALFWD_LAB_FIREWALLD
  (tests/lab/versions.py parse_cases; default CI_FIREWALLD_CASES, `all` for the cross
  product), with that firewalld fetched and configured; `lab.firewalld.build` says which.
- `root_dir`: a directory only root can write to, in directories only root can write to,
  for programs calfwd may run (on_calico_flush): tmp_path is under the sticky /tmp, where
  calfwd refuses them. Under /run, removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
for path in (TESTS, TESTS.parent):  # tests/ (for `lab`), the repo root (for `calfwd`)
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


@pytest.fixture
def lab(tmp_path):
    from lab import Lab, unavailable

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with Lab(tmp_path) as built:
        yield built


# Each behaviour once: 0.9 and 1.x flush with the nftables backend, 2.x does not, the
# iptables backend always flushes. The same four cases on Debian 12 and 13.
CI_FIREWALLD_CASES = "0.9.3/nftables,1.3/nftables,2.3/nftables,own/iptables"


def pytest_generate_tests(metafunc):
    if "firewalld_case" in metafunc.fixturenames:
        from lab.versions import own, parse_cases

        try:
            cases = parse_cases(os.environ.get("CALFWD_LAB_FIREWALLD", CI_FIREWALLD_CASES), own().version)
        except ValueError as exc:
            raise pytest.UsageError(str(exc))
        metafunc.parametrize("firewalld_case", cases, ids=["%s-%s" % case for case in cases])


@pytest.fixture
def lab_versions(tmp_path, firewalld_case):
    from lab import Lab, unavailable
    from lab.versions import fetch

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    name, backend = firewalld_case
    with Lab(tmp_path, backend=backend, firewalld=fetch(name)) as built:
        yield built


@pytest.fixture
def root_dir():
    if os.geteuid() != 0:
        pytest.skip("a directory only root can write to needs root")
    path = Path(tempfile.mkdtemp(prefix="calfwd-test-", dir="/run"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
