"""calfwd's RPM inside a booted systemd root (systemd_root.py), for the tests that need the
package as a node gets it: built by the Makefile's own `rpm` target from this checkout and
installed by rpm itself, so its scriptlets run against the container's systemd.

The one adaptation to the Debian root: the package has Fedora's site-packages layout, which
Debian's python3 does not search, so a .pth file points it there (`python3 -I` still reads
.pth files).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator, Optional

import pytest

from .netns import SYSTEM_PATH
from .systemd_root import RootBuildError, SystemdContainer, Unavailable, ensure_root, is_ci, prerequisites

REPO = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"
SITELIB_PTH = "/usr/lib/python3/dist-packages/calfwd-rpm-sitelib.pth"


def skip_or_fail(reason: str) -> None:
    """Skip where the lab cannot run; with CI=true that is a failure: CI must run these."""
    if is_ci():
        pytest.fail("%s (CI=true: this test must run in CI, not skip)" % reason, pytrace=False)
    pytest.skip(reason)


def build_rpm(topdir: Path) -> Path:
    """The noarch RPM of this checkout (`make rpm`)."""
    build = subprocess.run(["make", "-C", str(REPO), "rpm", "RPM_TOPDIR=%s" % topdir, "PYTHON=%s" % PYTHON],
                           capture_output=True, text=True, timeout=600, env=dict(os.environ, PATH=SYSTEM_PATH))
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return next((topdir / "RPMS" / "noarch").glob("calfwd-*.noarch.rpm"))


def copy_in(box: SystemdContainer, package: Path, target: str = "/root/calfwd.rpm") -> None:
    """The package into the root, with the .pth that lets Debian's python3 find it."""
    files = subprocess.run(["rpm", "-qlp", str(package)], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    sitelib = next(f for f in files if f.endswith("/calfwd/__init__.py")).rsplit("/calfwd/", 1)[0]
    box.write(SITELIB_PTH, sitelib + "\n")
    box.write(target, package.read_bytes())


def install(box: SystemdContainer, package: Path) -> None:
    copy_in(box, package)
    box.run("rpm", "-i", "--nodeps", "/root/calfwd.rpm", timeout=120)


def root_or_skip() -> Path:
    """The cached root (built the first time); a skip (a failure in CI) where it cannot be."""
    reason = prerequisites()
    if reason:
        skip_or_fail(reason)
    try:
        return ensure_root(log=print)
    except Unavailable as exc:
        skip_or_fail(str(exc))
    except RootBuildError as exc:  # not the environment: a real failure, CI or not
        pytest.fail("building the systemd root failed: %s" % exc, pytrace=False)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def booted_with(workdir: Path, package: Path, hostname: Optional[str] = None) -> Iterator[SystemdContainer]:
    """A booted container with the package installed; powered off and removed on exit."""
    root = root_or_skip()
    container = (SystemdContainer(root, workdir, hostname=hostname) if hostname
                 else SystemdContainer(root, workdir))
    try:
        container.boot()
        install(container, package)
        yield container
    finally:
        container.close()
