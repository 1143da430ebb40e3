"""The unit tests need no binding (issue 20 item 3): with dbus-python, libnftables', gi and
systemd's Python modules made unimportable, `pytest tests/unit` collects every module and
passes; a test that needs a binding skips, saying which.

The bindings are hidden by a sitecustomize on PYTHONPATH, so the programs the tests start
(`python -m calfwd ...`) run without them too. The nested run leaves out this file (no
recursion) and runs, without collecting them only, the three modules that are slow and
touch no driver: the RPM build, the AST walk for shells, hypothesis' config documents.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NESTED = "CALFWD_NO_BINDINGS_RUN"
BLOCKED = ("dbus", "_dbus_bindings", "_dbus_glib_bindings", "nftables", "gi", "systemd")
SLOW = ("tests/unit/test_packaging.py", "tests/unit/test_no_shell.py", "tests/unit/test_config_hypothesis.py")

SITECUSTOMIZE = f"""
import sys

BLOCKED = {BLOCKED!r}


class NoBindings:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden: a run without bindings)", name=name)
        return None


sys.meta_path.insert(0, NoBindings())
"""


def _env(site: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1")
    env[NESTED] = "1"
    return env


@pytest.mark.skipif(bool(os.environ.get(NESTED)), reason="already the run without bindings")
def test_the_hiding_works(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    probe = "import importlib\nfor name in %r:\n    try:\n        importlib.import_module(name)\n" \
            "    except ImportError:\n        continue\n    raise SystemExit(name + ' imported')\n" % (BLOCKED,)
    done = subprocess.run([sys.executable, "-c", probe], env=_env(tmp_path), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(bool(os.environ.get(NESTED)), reason="already the run without bindings")
def test_the_unit_tests_pass_without_any_binding(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    args = [sys.executable, "-m", "pytest", "tests/unit", "-q", "-rs", "-p", "no:cacheprovider",
            "--ignore", "tests/unit/test_no_bindings.py"] + [a for path in SLOW for a in ("--deselect", path)]
    done = subprocess.run(args, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert "could not import 'dbus'" in out, out[-3000:]  # the bindings were hidden indeed
    assert " error" not in out.splitlines()[-1], out[-3000:]  # nothing failed to collect
