"""The shape of src/facerefine's import graph: no circles, and report code never reaches the
weight loaders.

The graph is read statically with ``ast`` by the walker of ``test_stage_deps`` (imports inside
functions count, ``TYPE_CHECKING`` blocks do not, ``from a import b`` counts ``a.b`` when it
is a module). An edge from a module to one of its own parent packages is not a circle: Python
initialises the parent before the child, whatever the parent imports.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_stage_deps import PACKAGE, _package_of, _with_parents, direct_imports, module_file

SRC = Path(__file__).resolve().parents[1] / "src"

# Modules that render reports, banners or cards. They take stand-in lists as data
# (facerefine.banners); loading weights is the stages' business.
REPORT_MODULES = (
    "facerefine.banners",
    "facerefine.report",
    "facerefine.evaluation",
    "facerefine.analysis.report",
    "facerefine.train.selection",
    "facerefine.train.reporting",
    "facerefine.card",
    "facerefine.review",
    "facerefine.summary",
)
WEIGHTS = "facerefine.weights"


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the facerefine modules it may import (parents of itself left out)."""
    graph = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        name = module_name(path, src)
        graph[name] = set(direct_imports(path, _package_of(name, path))) - set(_with_parents(name))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing
    itself (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(sorted(component))
    return found


def reachable(name: str) -> set[str]:
    """Every facerefine module that importing ``name`` may load (its parents' __init__s too)."""
    seen: set[str] = set()
    todo = _with_parents(name)
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        path = module_file(current)
        todo.extend(direct_imports(path, _package_of(current, path)) - seen)
    return seen


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_report_modules_never_reach_the_weight_loaders():
    offenders = {name: sorted(m for m in reachable(name) if m == WEIGHTS or m.startswith(WEIGHTS + "."))
                 for name in REPORT_MODULES}
    assert all(module_file(name) for name in REPORT_MODULES), "a report module was renamed: update the list"
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_weights_init_loads_no_family():
    """A stage importing weights.flux must not load the DeepFace or LPIPS code: the package
    __init__ imports nothing."""
    assert direct_imports(module_file(WEIGHTS), WEIGHTS) == frozenset()


# --- the checks themselves, on throwaway packages ----------------------------------------------

def test_cycles_finds_circles_and_only_them():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


@pytest.fixture
def fake_src(tmp_path, monkeypatch):
    import test_stage_deps

    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Docstring only."""\n')
    (pkg / "sub" / "__init__.py").write_text("from facerefine.sub import leaf\n")  # parent imports child
    (pkg / "sub" / "leaf.py").write_text("from facerefine import sub\n")
    (pkg / "one.py").write_text("def f():\n    from facerefine import two\n")  # lazy import counts
    (pkg / "two.py").write_text("import facerefine.one\n")
    monkeypatch.setattr(test_stage_deps, "SRC", tmp_path)
    direct_imports.cache_clear()
    yield tmp_path
    direct_imports.cache_clear()


def test_graph_sees_function_level_circles_but_not_parent_packages(fake_src):
    assert cycles(import_graph(fake_src)) == [["facerefine.one", "facerefine.two"]]
