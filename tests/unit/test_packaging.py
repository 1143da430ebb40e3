"""Packaging: the systemd unit, the journal catalog, the man pages, the RPM, Python 3.9.

Everything here is checked with the real tools (systemd-analyze, journalctl, groff, man,
rpmbuild, rpm, rpmlint), each test skipping with the reason when its tool is missing.
Nothing touches the host's systemd, catalog database or rpmdb: systemd-analyze runs in
a private mount namespace (it drops a marker file into /run/systemd), the catalog is
compiled under a temporary --root, and the RPM is only queried, never installed.

The RPM is built once per session with `make rpm` into a temporary _topdir.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "calfwd.service"
CATALOG = REPO / "packaging" / "calfwd.catalog"
SPEC = REPO / "packaging" / "calfwd.spec"
RPMLINTRC = REPO / "packaging" / "calfwd.rpmlintrc"
MANPAGES = REPO / "packaging" / "manpages.py"
SHIPPED_CONFIG = REPO / "etc" / "calfwd" / "calfwd.toml"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PYTHON = "/usr/bin/python3"
MAX_EXPOSURE = 2.5

sys.path.insert(0, str(REPO / "packaging"))
import manpages  # noqa: E402

from calfwd import __version__, cli, events  # noqa: E402
from calfwd.config import schema  # noqa: E402


def _which(tool: str) -> Optional[str]:
    return shutil.which(tool, path=SYSTEM_PATH)


def _need(*tools: str) -> None:
    missing = [t for t in tools if not _which(t)]
    if missing:
        pytest.skip("needs " + ", ".join(missing))


def _run(argv: List[str], env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None,
         timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PATH=SYSTEM_PATH, LC_ALL="C.UTF-8")
    full_env.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, env=full_env, cwd=cwd,
                          timeout=timeout, check=False)


# -- the systemd unit --------------------------------------------------------------------

def parse_unit(path: Path) -> Dict[str, Dict[str, List[str]]]:
    """section -> key -> every value given (systemd allows repeated keys)."""
    sections: Dict[str, Dict[str, List[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        text = raw.strip()
        if not text or text.startswith(("#", ";")):
            continue
        if text.startswith("[") and text.endswith("]"):
            current = sections.setdefault(text[1:-1], {})
            continue
        assert current is not None, "%s: setting outside a section: %s" % (path, raw)
        key, _, value = text.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _words(unit: Dict[str, Dict[str, List[str]]], section: str, key: str) -> List[str]:
    return [w for value in unit.get(section, {}).get(key, []) for w in value.split()]


def _analyze(*args: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """systemd-analyze in a private mount namespace with a throw-away /run/systemd.

    systemd-analyze leaves /run/systemd/systemd-units-load behind; the host's /run stays
    untouched this way.
    """
    _need("systemd-analyze", "unshare", "mount")
    if os.geteuid() != 0:
        pytest.skip("needs root (systemd-analyze runs in a private mount namespace)")
    script = 'mount -n -t tmpfs calfwd-test /run/systemd && exec "$@"'
    return _run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script,
                 "sh", "systemd-analyze", *args], env=env)


@pytest.fixture(scope="module")
def unit() -> Dict[str, Dict[str, List[str]]]:
    return parse_unit(UNIT)


def test_unit_is_a_notify_service_with_reload_watchdog_and_restart(unit):
    service = unit["Service"]
    assert service["Type"] == ["notify"]  # systemd 252 (EL9) has no notify-reload
    assert service["ExecStart"] == ["/usr/bin/calfwd run"]
    # Validate first, so `systemctl reload` fails on an invalid file; then SIGHUP.
    assert service["ExecReload"] == ["/usr/bin/calfwd check", "/bin/kill -HUP $MAINPID"]
    assert service["Restart"] == ["on-failure"]
    assert service.get("NotifyAccess", ["main"]) == ["main"]
    watchdog = service["WatchdogSec"][0]
    assert re.fullmatch(r"\d+(s|min)", watchdog), watchdog
    # An invalid config (exit 2) is not fixed by restarting.
    assert "2" in _words(unit, "Service", "RestartPreventExitStatus")
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_orders_after_firewalld_without_depending_on_it(unit):
    after = _words(unit, "Unit", "After")
    assert "firewalld.service" in after and "dbus.service" in after
    assert "kubelet.service" in _words(unit, "Unit", "Before")
    for key in ("Requires", "Requisite", "BindsTo", "PartOf", "Wants", "Upholds"):
        assert "firewalld.service" not in _words(unit, "Unit", key), key


def test_unit_hardening_keeps_what_calfwd_needs(unit):
    service = unit["Service"]
    assert _words(unit, "Service", "CapabilityBoundingSet") == ["CAP_NET_ADMIN"]
    families = _words(unit, "Service", "RestrictAddressFamilies")
    assert "AF_UNIX" in families and "AF_NETLINK" in families  # system bus, nftables
    assert not any(f.startswith("~") for f in families)
    # The host's network namespace and real uid 0 are what calfwd manages and is trusted as.
    assert service.get("PrivateNetwork", ["no"]) == ["no"]
    assert service.get("PrivateUsers", ["no"]) == ["no"]
    assert "User" not in service and "DynamicUser" not in service
    assert service["ProtectSystem"] == ["strict"]
    # calfwd writes only its status files, in a runtime directory systemd makes and removes,
    # the metrics file, in node_exporter's usual directories, and the node labels, in NFD's.
    assert service["RuntimeDirectory"] == ["calfwd"] and service["RuntimeDirectoryMode"] == ["0755"]
    assert service["RuntimeDirectoryPreserve"] == ["yes"]  # NPD's hostPath mount survives restarts
    assert _words(unit, "Service", "ReadWritePaths") == [
        "-/var/lib/node_exporter/textfile_collector", "-/var/lib/prometheus/node-exporter",
        "-/etc/kubernetes/node-feature-discovery/features.d"]
    for key in ("StateDirectory", "LogsDirectory", "CacheDirectory"):
        assert key not in service, key
    # Bounded whatever a hostile bus client or a runaway command does (issue 11, item 2).
    assert service["MemoryMax"] == ["256M"] and service["TasksMax"] == ["32"]


def test_unit_verifies_clean(tmp_path):
    """systemd-analyze verify, with ExecStart pointed at an existing binary in a copy.

    The man pages are rendered first and put on MANPATH, so Documentation=man:... is
    checked for real too.
    """
    text = UNIT.read_text()
    copy = tmp_path / "calfwd.service"
    copy.write_text(text.replace("=/usr/bin/calfwd ", "=/bin/true "))
    changed = [(a, b) for a, b in zip(text.splitlines(), copy.read_text().splitlines()) if a != b]
    assert len(changed) == 2, changed  # ExecStart and the ExecReload check
    mandir = tmp_path / "man"
    manpages.main(["--outdir", str(mandir)])
    _need("man")
    proc = _analyze("verify", str(copy), env={"MANPATH": str(mandir)})
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), (
        proc.stdout + proc.stderr)


def test_unit_exposure_is_at_most_2_5():
    proc = _analyze("security", "--offline=yes", "--no-pager", str(UNIT))
    match = re.search(r"Overall exposure level for calfwd\.service: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, proc.stdout


# -- the journal catalog -----------------------------------------------------------------

def parse_catalog(path: Path) -> Dict[str, Dict[str, object]]:
    """MESSAGE_ID -> {"headers": {name: value}, "body": [lines]}, as journalctl reads it."""
    entries: Dict[str, Dict[str, object]] = {}
    current: Optional[Dict[str, object]] = None
    in_headers = False
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if raw.startswith("-- "):
            match = re.fullmatch(r"-- ([0-9a-f]{32})", raw)
            assert match, "%s:%d: bad entry header %r" % (path, number, raw)
            assert match.group(1) not in entries, "%s:%d: duplicate id" % (path, number)
            current = {"headers": {}, "body": []}
            entries[match.group(1)] = current
            in_headers = True
        elif current is None:
            assert not raw.strip() or raw.startswith("#"), "%s:%d: text before the first entry" % (
                path, number)
        elif in_headers and raw.strip():
            name, sep, value = raw.partition(": ")
            assert sep and re.fullmatch(r"[A-Z][A-Za-z-]*", name), "%s:%d: bad header %r" % (
                path, number, raw)
            current["headers"][name] = value  # type: ignore[index]
        elif in_headers:
            in_headers = False
        else:
            current["body"].append(raw)  # type: ignore[union-attr]
    return entries


def test_catalog_covers_exactly_the_event_kinds():
    entries = parse_catalog(CATALOG)
    ids = {kind.message_id for kind in events.KINDS.values()}
    assert set(entries) == ids
    for message_id, entry in entries.items():
        headers = entry["headers"]
        assert headers.get("Subject"), message_id  # type: ignore[union-attr]
        assert headers.get("Defined-By") == "calfwd", message_id  # type: ignore[union-attr]
        assert headers.get("Support"), message_id  # type: ignore[union-attr]
        body = "\n".join(entry["body"]).strip()  # type: ignore[arg-type]
        assert len(body) > 80, message_id
        for field in re.findall(r"@([A-Za-z0-9_]+)@", body + headers["Subject"]):  # type: ignore[index]
            assert re.fullmatch(r"CALFWD_[A-Z0-9_]+", field), (message_id, field)


def test_event_kinds_have_unique_well_formed_ids():
    ids = [kind.message_id for kind in events.KINDS.values()]
    assert len(set(ids)) == len(ids)
    for kind in events.KINDS.values():
        assert re.fullmatch(r"[0-9a-f]{32}", kind.message_id), kind
        assert kind.priority in (3, 4, 5, 6, 7), kind


def test_catalog_compiles_with_journalctl(tmp_path):
    """journalctl --update-catalog under a temporary --root: the host's database is untouched."""
    _need("journalctl")
    catalog_dir = tmp_path / "usr" / "lib" / "systemd" / "catalog"
    catalog_dir.mkdir(parents=True)
    (tmp_path / "var" / "lib" / "systemd" / "catalog").mkdir(parents=True)
    shutil.copy(CATALOG, catalog_dir / "calfwd.catalog")
    proc = _run(["journalctl", "--root", str(tmp_path), "--update-catalog"])
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    assert (tmp_path / "var" / "lib" / "systemd" / "catalog" / "database").is_file()
    listed = _run(["journalctl", "--root", str(tmp_path), "--list-catalog"]).stdout
    subjects = {mid: e["headers"]["Subject"] for mid, e in parse_catalog(CATALOG).items()}  # type: ignore[index]
    for message_id, subject in subjects.items():
        assert "%s calfwd: %s" % (message_id, subject) in listed


# -- man pages ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Dict[str, Path]:
    outdir = tmp_path_factory.mktemp("man")
    manpages.main(["--outdir", str(outdir)])
    return {"calfwd.8": outdir / "man8" / "calfwd.8",
            "calfwd.toml.5": outdir / "man5" / "calfwd.toml.5"}


def _man_text(path: Path) -> str:
    _need("man")
    proc = _run(["man", "-l", str(path)], env={"MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("page", ["calfwd.8", "calfwd.toml.5"])
def test_man_page_renders_without_warnings(rendered, page):
    _need("groff", "man")
    groff = _run(["groff", "-man", "-ww", "-z", str(rendered[page])])
    assert groff.returncode == 0 and not groff.stderr.strip(), groff.stderr
    man = _run(["man", "--warnings", "-l", str(rendered[page])],
               env={"MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"})
    assert man.returncode == 0 and not man.stderr.strip(), man.stderr


def test_calfwd_8_documents_every_command_option_exit_code_and_event(rendered):
    text = _man_text(rendered["calfwd.8"])
    parser = cli._parser()
    for action in parser._actions:
        for option in action.option_strings:
            assert option in text, option
    _, _, commands, _ = manpages._parser_parts()
    for name in commands:
        assert re.search(r"^       %s\b" % re.escape(name), text, re.M), name
    assert "--json" in text
    for code in (cli.EXIT_OK, cli.EXIT_DRIFT, cli.EXIT_CONFIG, cli.EXIT_SYSTEM):
        assert re.search(r"^       %d\s" % code, text, re.M), code
    for kind in events.KINDS.values():
        assert kind.name in text and kind.message_id in text, kind.name
    assert "calfwd.toml(5)" in text


def test_every_command_has_its_man_page_prose():
    _, _, commands, _ = manpages._parser_parts()
    assert set(commands) == set(manpages.COMMAND_DETAILS)


def test_calfwd_toml_5_documents_every_key_with_its_default(rendered):
    text = _man_text(rendered["calfwd.toml.5"])
    for section, keys in schema.SCHEMA.items():
        assert "[%s]" % section.upper() in text, section
        for key, (_check, default) in keys.items():
            if default is schema.REQUIRED:
                assert "%s (required)" % key in text, key
            else:
                assert "%s = %s" % (key, manpages.toml_value(default)) in re.sub(r"\s+", " ", text), key


def test_every_config_key_is_described_in_the_shipped_file():
    _intro, described = manpages.config_comments()
    for section, keys in schema.SCHEMA.items():
        for key in keys:
            assert described.get((section, key)), "%s.%s has no comment in %s" % (
                section, key, SHIPPED_CONFIG)


# -- Python 3.9 (RHEL 9's system Python) -------------------------------------------------

# Names that only exist after 3.9: importing or using them breaks on EL9.
_NEW_MODULES = {"tomllib": "3.11"}
_NEW_NAMES = {
    ("typing", n): "3.10+" for n in ("TypeAlias", "ParamSpec", "Concatenate", "TypeGuard",
                                     "Self", "LiteralString", "Never", "assert_never",
                                     "reveal_type", "Required", "NotRequired", "Unpack",
                                     "TypeVarTuple", "dataclass_transform", "override",
                                     "is_typeddict", "get_overloads", "assert_type")}
_NEW_NAMES.update({("itertools", "pairwise"): "3.10", ("contextlib", "chdir"): "3.11",
                   ("contextlib", "aclosing"): "3.10", ("enum", "StrEnum"): "3.11",
                   ("datetime", "UTC"): "3.11", ("asyncio", "TaskGroup"): "3.11",
                   ("asyncio", "timeout"): "3.11", ("enum", "verify"): "3.11"})
_NEW_BUILTINS = {"aiter", "anext", "ExceptionGroup", "BaseExceptionGroup", "EncodingWarning"}
_TYPE_NAMES = {"int", "str", "float", "bool", "bytes", "list", "dict", "tuple", "set",
               "frozenset", "type", "object", "List", "Dict", "Tuple", "Set", "FrozenSet",
               "Optional", "Union", "Callable", "Type", "Sequence", "Mapping", "Iterable",
               "Iterator", "Any"}


def _is_type_union(node: ast.AST) -> bool:
    """`X | Y` where a side is plainly a type: int | None, List[str] | str, ..."""
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)):
        return False
    for side in (node.left, node.right):
        if isinstance(side, ast.Constant) and side.value is None:
            return True
        if isinstance(side, ast.Name) and side.id in _TYPE_NAMES:
            return True
        if isinstance(side, ast.Subscript) and isinstance(side.value, ast.Name) \
                and side.value.id in _TYPE_NAMES:
            return True
        if _is_type_union(side):
            return True
    return False


def _py39_problems(path: Path) -> List[str]:
    """What in this file needs Python > 3.9.

    Syntax through ast's feature_version=(3, 9) (match, except*, ...), plus what the
    grammar cannot see: PEP 604 unions evaluated at runtime (annotations without
    `from __future__ import annotations`, isinstance(x, int | str)), parenthesized
    context managers, keyword arguments added later (zip(strict=), dataclass(slots=)),
    modules and names added after 3.9 (tomllib without an ImportError fallback, ...).
    vermin would do this too, but it is not packaged by Debian or EL9.
    """
    source = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, str(path), feature_version=(3, 9))
    except SyntaxError as exc:
        return ["%s:%s: syntax newer than 3.9: %s" % (path, exc.lineno, exc.msg)]
    problems: List[str] = []
    lines = source.splitlines()
    future_annotations = any(
        isinstance(node, ast.ImportFrom) and node.module == "__future__"
        and any(a.name == "annotations" for a in node.names) for node in tree.body)

    def where(node: ast.AST) -> str:
        return "%s:%d" % (path, getattr(node, "lineno", 0))

    in_annotation: Set[int] = set()
    guarded: Set[int] = set()  # nodes inside `try: ... except ImportError:`
    for node in ast.walk(tree):
        roots: List[Optional[ast.AST]] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            roots = [x.annotation for x in a.posonlyargs + a.args + a.kwonlyargs]
            roots += [a.vararg.annotation if a.vararg else None,
                      a.kwarg.annotation if a.kwarg else None, node.returns]
        elif isinstance(node, ast.AnnAssign):
            roots = [node.annotation]
        for root in roots:
            if root is not None:
                in_annotation.update(id(sub) for sub in ast.walk(root))
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in node.handlers):
            guarded.update(id(sub) for inner in node.body for sub in ast.walk(inner))

    imported: Dict[str, str] = {}
    for node in ast.walk(tree):
        if type(node).__name__ in ("Match", "TryStar"):
            problems.append("%s: %s statement (3.10+)" % (where(node), type(node).__name__))
        if isinstance(node, (ast.With, ast.AsyncWith)) and len(node.items) > 1:
            first = node.items[0].context_expr
            if first.lineno == node.lineno:
                head = lines[node.lineno - 1][node.col_offset:first.col_offset]
            else:
                head = "\n".join([lines[node.lineno - 1][node.col_offset:]]
                                 + lines[node.lineno:first.lineno - 1]
                                 + [lines[first.lineno - 1][:first.col_offset]])
            if "(" in head:
                problems.append("%s: parenthesized context managers (3.10)" % where(node))
        if _is_type_union(node) and not (future_annotations and id(node) in in_annotation):
            problems.append("%s: X | Y type union evaluated at runtime (3.10)" % where(node))
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            keywords = {k.arg for k in node.keywords}
            if name == "zip" and "strict" in keywords:
                problems.append("%s: zip(strict=) (3.10)" % where(node))
            if name in ("dataclass", "field") and keywords & {"slots", "kw_only", "match_args"}:
                problems.append("%s: dataclass slots/kw_only/match_args (3.10)" % where(node))
        if isinstance(node, ast.Import):
            for alias in node.names:
                imported[alias.asname or alias.name] = alias.name
                if alias.name in _NEW_MODULES and id(node) not in guarded:
                    problems.append("%s: import %s (%s) without an ImportError fallback"
                                    % (where(node), alias.name, _NEW_MODULES[alias.name]))
        if isinstance(node, ast.ImportFrom) and node.module and id(node) not in guarded:
            if node.module in _NEW_MODULES:
                problems.append("%s: from %s import ... (%s) without an ImportError fallback"
                                % (where(node), node.module, _NEW_MODULES[node.module]))
            for alias in node.names:
                if (node.module, alias.name) in _NEW_NAMES:
                    problems.append("%s: from %s import %s (%s)" % (
                        where(node), node.module, alias.name, _NEW_NAMES[(node.module, alias.name)]))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = imported.get(node.value.id)
            if module and (module, node.attr) in _NEW_NAMES:
                problems.append("%s: %s.%s (%s)" % (where(node), module, node.attr,
                                                    _NEW_NAMES[(module, node.attr)]))
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in _NEW_BUILTINS:
            problems.append("%s: builtin %s (3.10+)" % (where(node), node.id))
    return problems


def _python_sources() -> List[Path]:
    """What runs on the target (calfwd/), at build time there (packaging/), and these tests."""
    files = sorted((REPO / "calfwd").rglob("*.py")) + sorted((REPO / "packaging").glob("*.py"))
    files += [Path(__file__), REPO / "tests" / "integration" / "test_unit_and_journal.py"]
    return [f for f in files if f.exists()]


def test_python_sources_run_on_python_3_9():
    problems = [p for path in _python_sources() for p in _py39_problems(path)]
    assert not problems, "\n".join(problems)


def test_py39_checker_catches_what_it_claims(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import tomllib\n"
                   "from typing import TypeAlias\n"
                   "def f(x: int | None) -> None:\n"
                   "    return isinstance(x, int | str)\n"
                   "z = zip([], [], strict=True)\n"
                   "match z:\n"
                   "    case _:\n"
                   "        pass\n")
    problems = _py39_problems(bad)
    assert problems and "syntax newer than 3.9" in problems[0]
    bad.write_text("\n".join(line for line in bad.read_text().splitlines()[:5]) + "\n"
                   "with (open('a') as a,\n      open('b') as b):\n    pass\n")
    text = "\n".join(_py39_problems(bad))
    for needle in ("import tomllib", "TypeAlias", "X | Y", "zip(strict=)", "parenthesized"):
        assert needle in text, (needle, text)
    good = tmp_path / "good.py"
    good.write_text("from __future__ import annotations\n"
                    "try:\n    import tomllib\nexcept ImportError:\n    import tomli as tomllib\n"
                    "def f(x: int | None) -> list[int]:\n    return [1]\n"
                    "with open('a') as a, open('b') as b:\n    pass\n"
                    "flags = 1 | 2\n")
    assert _py39_problems(good) == []


def test_python_sources_compile_with_a_real_python_3_9_when_there_is_one():
    """Belt and braces: when a 3.9 interpreter exists (EL9's /usr/bin/python3, pyenv),
    compile everything with it. The AST check above runs everywhere."""
    candidates = [PYTHON, "/usr/bin/python3.9"]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))
    for candidate in candidates:
        if not os.access(candidate, os.X_OK):
            continue
        version = _run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 9))"])
        if version.stdout.strip() == "True":
            break
    else:
        pytest.skip("no Python 3.9 interpreter here (the AST check covers 3.9 compatibility)")
    code = ("import sys\n"
            "for path in sys.argv[1:]:\n"
            "    compile(open(path, encoding='utf-8').read(), path, 'exec')\n")
    proc = _run([candidate, "-c", code, *map(str, _python_sources())])
    assert proc.returncode == 0, proc.stderr


# -- the spec and the RPM ----------------------------------------------------------------

def test_spec_version_matches_the_code():
    spec_version = re.search(r"^Version:\s*(\S+)", SPEC.read_text(), re.M).group(1)
    pyproject = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert spec_version == __version__ == pyproject.group(1)


class Rpm:
    def __init__(self, topdir: Path):
        self.topdir = topdir
        self.binary = next((topdir / "RPMS" / "noarch").glob("calfwd-%s-*.noarch.rpm" % __version__))
        self.source = next((topdir / "SRPMS").glob("calfwd-%s-*.src.rpm" % __version__))

    def query(self, *args: str, package: Optional[Path] = None) -> str:
        proc = _run(["rpm", "-qp", *args, str(package or self.binary)])
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def files(self) -> Dict[str, Tuple[str, str, str, str]]:
        """path -> (mode, user, group, flags) from the package header."""
        out = self.query("--qf", "[%{FILENAMES}\t%{FILEMODES:perms}\t%{FILEUSERNAME}\t"
                                 "%{FILEGROUPNAME}\t%{FILEFLAGS:fflags}\n]")
        rows = {}
        for text in out.splitlines():
            path, mode, user, group, flags = text.split("\t")
            rows[path] = (mode, user, group, flags)
        return rows

    def sitelib(self) -> str:
        return next(p for p in self.files() if p.endswith("/calfwd/__init__.py")).rsplit("/calfwd/", 1)[0]

    def extract(self, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        payload = subprocess.run(["rpm2cpio", str(self.binary)], capture_output=True, check=True,
                                 env=dict(os.environ, PATH=SYSTEM_PATH))
        subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], input=payload.stdout,
                       cwd=dest, check=True, capture_output=True, env=dict(os.environ, PATH=SYSTEM_PATH))
        return dest


@pytest.fixture(scope="session")
def rpm_package(tmp_path_factory) -> Iterator[Rpm]:
    """`make rpm` once per session, into a temporary _topdir."""
    for tool in ("rpmbuild", "rpm", "make", "tar"):
        if not _which(tool):
            pytest.skip("building the RPM needs %s" % tool)
    topdir = tmp_path_factory.mktemp("rpmbuild")
    proc = _run(["make", "-C", str(REPO), "rpm", "RPM_TOPDIR=%s" % topdir, "PYTHON=%s" % PYTHON],
                timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    yield Rpm(topdir)


def test_rpm_ships_the_program_unit_catalog_config_and_man_pages(rpm_package):
    files = rpm_package.files()
    sitelib = rpm_package.sitelib()
    assert re.fullmatch(r"/usr/lib/python3\.\d+/site-packages", sitelib), sitelib
    expected = ["/usr/bin/calfwd", "/usr/lib/systemd/system/calfwd.service",
                "/usr/lib/systemd/catalog/calfwd.catalog", "/etc/calfwd", "/etc/calfwd/calfwd.toml",
                "/usr/share/calfwd/node-problem-detector/calfwd-plugin-monitor.json"]
    for path in expected:
        assert path in files, path
    for module in sorted((REPO / "calfwd").rglob("*.py")):
        path = "%s/%s" % (sitelib, module.relative_to(REPO).as_posix())
        assert path in files, path
    # Bytecode ships: ProtectSystem=strict keeps the daemon from writing __pycache__.
    assert any(p.startswith(sitelib + "/calfwd/__pycache__/cli.") and p.endswith(".pyc") for p in files)
    for page in ("/usr/share/man/man8/calfwd.8", "/usr/share/man/man5/calfwd.toml.5"):
        assert any(re.fullmatch(re.escape(page) + r"(\.gz|\.bz2|\.xz|\.zst)?", p) for p in files), page
    # The README links into docs/: both ship as documentation, or the installed README's
    # links lead nowhere.
    docdir = next(f.rsplit("/", 1)[0] for f in files
                  if f.startswith("/usr/share/doc/") and f.endswith("/README.md"))
    for doc in sorted((REPO / "docs").glob("*.md")):
        assert "%s/docs/%s" % (docdir, doc.name) in files, doc.name
    assert files["/usr/bin/calfwd"][0] == "-rwxr-xr-x"
    assert any(p.endswith("/calfwd/calfwd-npd-check") and files[p][0] == "-rwxr-xr-x" for p in files)
    assert files["/etc/calfwd"][:3] == ("drwxr-xr-x", "root", "root")
    for path, (mode, _user, _group, _flags) in files.items():
        assert "w" not in mode[5] + mode[8], "%s is group/other-writable: %s" % (path, mode)


def test_rpm_config_is_noreplace_0644_root(rpm_package):
    assert rpm_package.query("--configfiles").split() == ["/etc/calfwd/calfwd.toml"]
    mode, user, group, flags = rpm_package.files()["/etc/calfwd/calfwd.toml"]
    assert (mode, user, group) == ("-rw-r--r--", "root", "root")
    assert "c" in flags and "n" in flags, flags  # %config(noreplace)


def test_rpm_dependencies(rpm_package):
    requires = set(rpm_package.query("-R").split("\n"))
    for name in ("python3-dbus", "python3-gobject-base", "python3-nftables", "python3-systemd"):
        assert name in requires, name
    build_python = _run([PYTHON, "-c", "import sys; print(sys.version_info >= (3, 11))"]).stdout.strip()
    assert ("python3-tomli" in requires) == (build_python == "False")
    assert any(r.startswith("python(abi) = 3.") for r in requires), requires
    assert not any(r.startswith("firewalld") for r in requires), "firewalld must stay optional"
    assert "firewalld" in rpm_package.query("--recommends").split()


def test_rpm_scriptlets(rpm_package):
    scripts = rpm_package.query("--scripts")
    sections = dict(re.findall(r"^(\w+) scriptlet \(using /bin/sh\):\n(.*?)(?=^\w+ scriptlet|\Z)",
                               scripts, re.M | re.S))
    post, preun, postun = sections["postinstall"], sections["preuninstall"], sections["postuninstall"]
    assert "calfwd.service" in post and re.search(r"preset|install-system-units", post)
    assert "journalctl --update-catalog" in post and "journalctl --update-catalog" in postun
    assert "calfwd.service" in preun and re.search(r"disable|remove-system-units", preun)
    assert "calfwd.service" in postun and re.search(r"try-restart|mark-restart-system-units", postun)
    # cleanup only on erase ($1 == 0), after the service is stopped, never failing.
    cleanup = preun.index("/usr/bin/calfwd cleanup")
    assert preun.rindex("calfwd.service", 0, cleanup) < cleanup
    guard = preun.rindex("if [ $1 -eq 0 ]", 0, cleanup)
    assert "fi" not in preun[guard:cleanup].split()
    assert preun[cleanup:].split("\n", 2)[1].rstrip().endswith("|| :")


@pytest.mark.parametrize("argument, cleanup_ran", [("0", True), ("1", False)])
def test_rpm_preun_never_fails_the_erase(rpm_package, tmp_path, argument, cleanup_ran):
    """Run the real %preun with stub systemctl and a calfwd whose cleanup fails."""
    preun = rpm_package.query("--qf", "%{PREUN}")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    log = tmp_path / "calls"
    for name, status in (("systemctl", 0), ("calfwd", 3)):
        stub = stubs / name
        stub.write_text("#!/bin/sh\necho %s \"$@\" >> %s\nexit %d\n" % (name, log, status))
        stub.chmod(0o755)
    script = preun.replace("/usr/bin/calfwd", str(stubs / "calfwd"))
    proc = subprocess.run(["/bin/sh", "-e", "-c", script, "preun", argument], capture_output=True,
                          text=True, env={"PATH": "%s:%s" % (stubs, SYSTEM_PATH)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text() if log.exists() else ""
    assert ("calfwd cleanup" in calls) == cleanup_ran, calls
    if cleanup_ran:
        assert calls.index("systemctl") < calls.index("calfwd cleanup")
        assert "cleanup failed" in proc.stderr


def test_rpm_command_wrapper_runs_calfwd_in_isolated_mode(rpm_package, tmp_path):
    root = rpm_package.extract(tmp_path / "root")
    wrapper = (root / "usr" / "bin" / "calfwd").read_text()
    assert wrapper.startswith("#!/usr/bin/python3 -I\n"), wrapper
    sitelib = root / rpm_package.sitelib().lstrip("/")
    # The payload's own code validates the payload's own config (what %check does too).
    proc = _run([PYTHON, "-c", "import sys; sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'calfwd';"
                 " exec(compile(open(sys.argv.pop(1)).read(), 'calfwd', 'exec'))",
                 str(sitelib), str(root / "usr" / "bin" / "calfwd"),
                 "--config", str(root / "etc" / "calfwd" / "calfwd.toml"), "check"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout
    assert (root / "usr" / "lib" / "systemd" / "system" / "calfwd.service").read_text() == UNIT.read_text()
    assert (root / "usr" / "lib" / "systemd" / "catalog" / "calfwd.catalog").read_text() == CATALOG.read_text()


def test_rpmlint_reports_no_errors(rpm_package):
    _need("rpmlint")
    proc = _run(["rpmlint", "-r", str(RPMLINTRC), str(rpm_package.binary), str(rpm_package.source),
                 str(SPEC)], env={"HOME": tempfile.gettempdir()})
    summary = re.search(r"(\d+) errors, (\d+) warnings", proc.stdout)
    assert summary, proc.stdout + proc.stderr
    assert summary.group(1) == "0", proc.stdout


def test_rpmlintrc_filters_are_documented():
    lines = RPMLINTRC.read_text().splitlines()
    for index, text in enumerate(lines):
        if text.startswith("addFilter("):
            previous = [l for l in lines[:index] if l.strip()]
            assert previous and (previous[-1].startswith("#") or previous[-1].startswith("addFilter(")), text


# -- node-problem-detector ----------------------------------------------------------------

def test_npd_plugin_config_follows_the_custom_plugin_schema_and_names_the_shipped_check():
    """The fields node-problem-detector's custom plugin monitor reads, and nothing else."""
    config = json.loads((REPO / "packaging" / "npd" / "calfwd-plugin-monitor.json").read_text())
    assert config["plugin"] == "custom" and config["source"]
    assert set(config["pluginConfig"]) <= {"invoke_interval", "timeout", "max_output_length", "concurrency",
                                          "enable_message_change_based_condition_update", "skip_initial_status"}
    conditions = {c["type"] for c in config["conditions"]}
    for rule in config["rules"]:
        assert rule["type"] in ("permanent", "temporary") and rule["reason"]
        assert rule["condition"] in conditions
        spec = SPEC.read_text()
        assert rule["path"] == "/usr/libexec/calfwd/calfwd-npd-check"
        assert "%{_libexecdir}/calfwd/calfwd-npd-check" in spec
    check = REPO / "packaging" / "npd" / "calfwd-npd-check"
    assert check.stat().st_mode & 0o111 and check.read_text().startswith("#!/bin/sh\n")
    if shutil.which("dash"):
        assert subprocess.run(["dash", "-n", str(check)]).returncode == 0
