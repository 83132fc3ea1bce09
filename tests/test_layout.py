"""The import graph of monitor/ and train/, read from the source with `ast`: no circles, and floors.

Every import counts, inside functions and under TYPE_CHECKING too: a module that imports one which imports it
(even lazily) is the circle this check exists to keep out. `from pkg import name` is an import of the module
pkg.name where that is a module, else of pkg (its __init__); a module does not import its package's __init__ by
being inside it.
"""
from __future__ import annotations

import ast
from collections import Counter
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Floors of the runtime, top first: a module may import its own floor and those below, never one above.
MONITOR_FLOORS = [
    ["monitor.cli"],
    ["monitor.service", "monitor.analyze", "monitor.serve", "monitor.model_cmd", "monitor.tui", "monitor.report"],
    ["monitor.pipeline", "monitor.health"],
    ["monitor.detect", "monitor.embed", "monitor.audio", "monitor.bus", "monitor.store", "monitor.alarms",
     "monitor.classify", "monitor.spells"],
    ["monitor.messages", "monitor.config", "monitor.workers", "monitor"],
]
# train: the command line on the type heads, which build on the detector's training and benchmarks, both on the
# data (records, label maps, grouped splits).
TRAIN_FLOORS = [
    ["train.__main__", "train.cli"],
    ["train.heads"],
    ["train.detector"],
    ["train.datasets", "train.labels", "train.splits", "train"],
]
MAX_TOP_LEVEL_MODULES = 20


def _modules() -> dict[str, Path]:
    found = {}
    for package in ("monitor", "train"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" in parts:  # Alembic's scripts, loaded by path, not imported
                continue
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


@cache
def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a non-module: its package
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]], within: str) -> list[str] | None:
    """One circle among the modules under `within`, or None."""
    nodes = {n for n in graph if n == within or n.startswith(within + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node] & nodes):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(nodes):
        if node not in state and (found := visit(node)):
            return found
    return None


def _floor(name: str, floors: list[list[str]]) -> int | None:
    """The floor of the longest prefix that names `name` or a package above it."""
    best, level = -1, None
    for index, prefixes in enumerate(floors):
        for prefix in prefixes:
            # a package's floor is its modules' too; "monitor" and "train" name only their own __init__
            covers = name == prefix or ("." in prefix and name.startswith(prefix + "."))
            if covers and len(prefix) > best:
                best, level = len(prefix), index
    return level


def test_no_circle_inside_monitor_or_train():
    graph = _graph()
    for package in ("monitor", "train"):
        cycle = _cycle(graph, package)
        assert cycle is None, f"import circle in {package}/: {' -> '.join(cycle or [])}"


def test_imports_follow_the_floors():
    graph = _graph()
    upward = []
    for floors in (MONITOR_FLOORS, TRAIN_FLOORS):
        for name, targets in graph.items():
            here = _floor(name, floors)
            if here is None:
                continue
            for target in targets:
                there = _floor(target, floors)
                if there is not None and there < here:
                    upward.append(f"{name} -> {target}")
    assert not upward, "a lower floor imports a higher one: " + ", ".join(sorted(upward))


def test_every_module_has_a_floor():
    graph = _graph()
    missing = [n for n in graph if _floor(n, MONITOR_FLOORS if n.split(".")[0] == "monitor" else TRAIN_FLOORS) is None]
    assert not missing, f"modules on no floor (add them to MONITOR_FLOORS or TRAIN_FLOORS): {missing}"


def test_the_runtime_imports_train_only_for_its_command_line():
    graph = _graph()
    into_train = sorted(f"{n} -> {t}" for n, ts in graph.items() if n.split(".")[0] == "monitor"
                        for t in ts if t.split(".")[0] == "train")
    assert into_train == ["monitor.cli -> train.cli"]


def test_monitor_top_level_is_small_and_names_are_unique():
    top = sorted(p.name for p in (ROOT / "monitor").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"monitor/ holds {len(top)} modules: {top}"
    names = Counter(p.name for p in (ROOT / "monitor").rglob("*.py")
                    if p.name != "__init__.py" and "migrations" not in p.parts)
    assert not [n for n, count in names.items() if count > 1], f"module names used twice in monitor/: {names}"
