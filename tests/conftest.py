"""Shared pytest setup.

- The repo root goes on sys.path so `import calfwd` works without installing anything,
  and tests/ so the lab imports as `lab` (`from lab import Lab`). Import it only under
  that name: `tests.lab` would be a second copy of every module.
- `lab`: a freshly built lab per test (see tests/lab/__init__.py); firewalld is not
  started. Skipped, with the reason, when not root or when a required tool is missing.
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
