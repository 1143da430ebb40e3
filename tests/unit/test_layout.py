"""The house keeps its shape: `ls calfwd/` answers "where is X" (at most 12 top-level modules,
the rest in folders), cli.py only parses and dispatches, and no room imports back into a room
that imports it (the rooms are the top-level modules and folders; a cycle between them means
a module sits in the wrong one)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

CALFWD = Path(__file__).resolve().parents[2] / "calfwd"
MAX_TOP_LEVEL = 12
MAX_CLI_LINES = 200


def room(module: str) -> str:
    """calfwd.judge.cni -> judge; calfwd.daemon -> daemon."""
    return module.split(".")[1] if module.count(".") else module


def modules() -> Dict[str, Path]:
    found = {}
    for path in CALFWD.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        name = ".".join(("calfwd",) + path.relative_to(CALFWD).with_suffix("").parts)
        found[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return found


def room_graph() -> Dict[str, Set[str]]:
    mods = modules()
    graph: Dict[str, Set[str]] = {room(m): set() for m in mods if m != "calfwd"}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: List[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("calfwd"):
                targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.startswith("calfwd")]
            for target in targets:
                while target not in mods and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in mods and target != "calfwd" and name != "calfwd" and room(target) != room(name):
                    graph[room(name)].add(room(target))
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Each strongly connected group of more than one room (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_at_most_12_top_level_modules():
    top = sorted(p.name for p in CALFWD.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, top


def test_cli_only_parses_and_dispatches():
    assert len((CALFWD / "cli.py").read_text().splitlines()) < MAX_CLI_LINES


def test_no_room_imports_back_into_a_room_that_imports_it():
    assert cycles(room_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
