"""The README stays a five-minute read that still maps the whole code, and no link in it or in
docs/ leads nowhere: a newcomer's first page must not rot as modules and docs move."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import List, Set

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
MAX_README_LINES = 300


def stage_table(text: str) -> str:
    """The README's table whose header starts with `| stage |`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"\|\s*stage\s*\|", line))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    return "\n".join(table)


def code_paths() -> List[Path]:
    """Every Python module under calfwd/, recursively (caches excluded)."""
    return sorted(p for p in (REPO / "calfwd").rglob("*.py") if "__pycache__" not in p.parts)


def _only_a_docstring(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def unnamed_modules(table: str) -> List[str]:
    """Modules the table names neither by path nor by name in a row that names their folder
    (`calfwd/sub/`: `module.py`); a folder's __init__.py that holds
    no code is named by the folder."""
    missing = []
    for path in code_paths():
        rel = path.relative_to(REPO).as_posix()
        folder = path.parent.relative_to(REPO).as_posix() + "/"
        rows = [row for row in table.splitlines() if folder != "calfwd/" and "`%s`" % folder in row]
        by_name = any("`%s`" % path.name in row for row in rows)
        empty_init = path.name == "__init__.py" and rows and _only_a_docstring(path)
        if not ("`%s`" % rel in table or by_name or empty_init):
            missing.append(rel)
    return missing


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(doc: Path) -> Set[str]:
    found: Set[str] = set()
    fence = False
    for line in doc.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        heading = re.match(r"#+ (.*)", line)
        if heading and not fence:
            found.add(slug(heading.group(1)))
    return found


def broken_links(doc: Path) -> List[str]:
    """Relative links in `doc` whose file (or heading anchor in a .md file) does not exist."""
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            broken.append("%s: %s (no such file)" % (doc.relative_to(REPO), target))
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append("%s: %s (no such heading)" % (doc.relative_to(REPO), target))
    return broken


def docs() -> List[Path]:
    return [README] + sorted((REPO / "docs").glob("*.md"))


def test_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, "README.md has %d lines; move detail to docs/" % lines


def test_stage_table_names_every_module_or_its_folder():
    assert unnamed_modules(stage_table(README.read_text())) == []


def test_stage_table_check_catches_a_missing_module():
    table = stage_table(README.read_text())
    assert "calfwd/judge/blockers.py" in unnamed_modules(table.replace("`blockers.py`", "blockers"))
    assert "calfwd/doctor/checks.py" in unnamed_modules(table.replace("`calfwd/doctor/`", "doctor"))
    assert "calfwd/reconcile.py" in unnamed_modules(table.replace("`calfwd/reconcile.py`", "reconcile"))


def test_every_relative_link_in_readme_and_docs_resolves():
    assert (REPO / "docs").is_dir()
    broken = [line for doc in docs() for line in broken_links(doc)]
    assert broken == []


def test_every_doc_is_linked_from_the_readme():
    readme = README.read_text()
    unlinked = [d.name for d in sorted((REPO / "docs").glob("*.md"))
                if "](docs/%s)" % d.name not in readme]
    assert unlinked == []


def test_link_check_catches_a_broken_link(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "a.md").write_text("# Top\n\n[ok](#top) [gone](b.md) [x](a.md#nowhere) "
                                   "[web](https://example.org/x)\n```\n[in code](c.md)\n```\n")
    assert broken_links(tmp_path / "a.md") == ["a.md: b.md (no such file)",
                                               "a.md: a.md#nowhere (no such heading)"]
