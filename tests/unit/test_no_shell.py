"""No shell anywhere: calfwd runs as root on a config and on names read from the system.

Walks every Python file of the tree with `ast` (not grep: comments and strings do not count,
aliases and keyword spellings do) and refuses:
- any call with a `shell=` keyword that is not the constant False (subprocess.run/Popen/...,
  or anything else taking one: a wrapper would forward it);
- os.system, os.popen, os.spawn*p*/os.exec*p* with a string, commands.getoutput, and
  subprocess.getoutput/getstatusoutput (which always use a shell);
- `from os import system` style imports of those names.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, List

import pytest

REPO = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", "__pycache__", "build", "dist", ".pytest_cache", ".hypothesis"}
SHELL_FUNCS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"),
               ("subprocess", "getstatusoutput"), ("commands", "getoutput"),
               ("commands", "getstatusoutput"), ("pty", "spawn")}


def python_files() -> Iterator[Path]:
    for path in sorted(REPO.rglob("*.py")):
        if not SKIP_DIRS.intersection(path.relative_to(REPO).parts):
            yield path
    # Scripts without the .py suffix that are Python (e.g. a packaged wrapper).
    for path in sorted(REPO.rglob("*")):
        if path.is_file() and path.suffix == "" and not SKIP_DIRS.intersection(path.relative_to(REPO).parts):
            try:
                head = path.read_bytes()[:64]
            except OSError:
                continue
            if head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0]:
                yield path


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return ""


def offences(tree: ast.AST, where: str) -> List[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append(f"{where}:{node.lineno}: shell={ast.unparse(kw.value)}")
                if kw.arg is None:  # **kwargs could smuggle shell=True in: only to non-subprocess calls
                    if dotted(node.func).startswith("subprocess."):
                        found.append(f"{where}:{node.lineno}: subprocess call with **kwargs")
            name = dotted(node.func)
            parts = tuple(name.split(".")[-2:])
            if parts in SHELL_FUNCS:
                found.append(f"{where}:{node.lineno}: {name}()")
        elif isinstance(node, ast.ImportFrom) and node.module in {m for m, _ in SHELL_FUNCS}:
            for alias in node.names:
                if (node.module, alias.name) in SHELL_FUNCS:
                    found.append(f"{where}:{node.lineno}: from {node.module} import {alias.name}")
    return found


def test_the_tree_has_python_files():
    files = [p.relative_to(REPO).as_posix() for p in python_files()]
    assert "calfwd/cli.py" in files and "calfwd/daemon.py" in files
    assert any(f.startswith("tests/lab/") for f in files)


def test_no_shell_anywhere():
    found = []
    for path in python_files():
        where = path.relative_to(REPO).as_posix()
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=where)
        except SyntaxError as exc:
            pytest.fail(f"{where}: not parseable: {exc}")
        found += offences(tree, where)
    assert not found, "shell use found:\n" + "\n".join(found)


@pytest.mark.parametrize("source", [
    "import subprocess\nsubprocess.run('ls', shell=True)\n",
    "import subprocess as sp\nsp.Popen(['ls'], shell=1)\n",
    "import subprocess\nflag = True\nsubprocess.check_output('x', shell=flag)\n",
    "import os\nos.system('ls')\n",
    "import os\nos.popen('ls').read()\n",
    "from os import system\n",
    "import subprocess\nsubprocess.getoutput('ls')\n",
    "import subprocess\nsubprocess.run(['ls'], **opts)\n",
])
def test_the_checker_catches(source):
    assert offences(ast.parse(source), "x.py")


def test_the_checker_allows_explicit_false():
    assert not offences(ast.parse("import subprocess\nsubprocess.run(['ls'], shell=False)\n"), "x.py")
