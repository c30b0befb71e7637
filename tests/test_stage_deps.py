"""`dvc status` tells the truth: each stage's deps cover every facerefine module it loads.

For every stage of dvc.yaml (foreach/matrix stages expanded and ``${...}`` resolved by
DVC itself), the script named in its ``cmd`` is parsed and the ``facerefine`` import
graph is walked statically with ``ast``: imports inside functions count (weights/lora.py
loads FLUX lazily), ``from facerefine.x import y`` counts ``y``
when it is a submodule, and importing ``a.b.c`` runs ``a/__init__.py`` and
``a/b/__init__.py`` too. A static walk over-approximates (a lazy import counts even if
this stage never calls that function): an extra re-run is cheap, a stale number that
`dvc status` calls "up to date" is not.

A dep covers a module when the dep path is the module's file or a folder above it.
"""

from __future__ import annotations

import ast
import shlex
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = "facerefine"

# Output-neutral plumbing: changing these cannot change a stage's outputs, so they need
# not be deps. They are leaves of the walk too (their own imports are not followed):
# stagekit imports config/names/shards only for exception classes. Keep this short;
# a module that decides a byte of any output does not belong here.
PLUMBING = {
    "facerefine.tracking",     # MLflow logging: params/metrics go to the tracker, never to outs
    "facerefine.paths",        # where outs live; a moved out is a dvc.yaml change DVC sees anyway
    "facerefine.distributed",  # process topology (rank, world size, barrier); shards are rank-independent
    "facerefine.stagekit",     # entry point: logging format, exit codes for user errors
}
# Not deps themselves, but what they import is followed: the package __init__ holds the lazy
# names of the Python API (load_head, Head), unused by stages, and applies facerefine.numerics,
# whose CPU pins decide the bits of every computed output (so numerics.py is a dep everywhere).
FOLLOWED_NOT_DEPS = {"facerefine"}
# Deliberately NOT plumbing:
# - io.py: its writers decide the bytes of every json/parquet/png out (JSON indent and key
#   order, parquet options and metadata); changing write_parquet changes data/prompts.
# - config.py: pydantic defaults and derived values (names_file, capped max_steps) reach
#   outputs without appearing in params.yaml.
# - hashing.py (seeds and ids), viz.py (pngs), heads.py (saved heads), weights/ (which
#   weights and stand-ins a stage runs), banners.py (the reports' stand-in banner).


def module_file(name: str) -> Path | None:
    """The source file that ``import name`` executes, if ``name`` is a facerefine module."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = SRC.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    """Names of the modules a source file may import, at any depth (functions included)."""

    def __init__(self, package: str) -> None:
        self.package = package  # the importing module's package, for relative imports
        self.names: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        # `if TYPE_CHECKING:` bodies never run; their else branch does.
        if not _is_type_checking(node.test):
            for child in node.body:
                self.visit(child)
        for child in node.orelse:
            self.visit(child)
        self.visit(node.test)

    def visit_Import(self, node: ast.Import) -> None:
        self.names.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.package.split(".")
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join(parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        self.names.add(base)
        # `from facerefine import weights`: the name may be a submodule.
        self.names.update(f"{base}.{alias.name}" for alias in node.names)

    def visit_Call(self, node: ast.Call) -> None:
        # importlib.import_module("facerefine.x") / __import__("facerefine.x") with a literal.
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if called in {"import_module", "__import__"} and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                self.names.add(arg.value)
        self.generic_visit(node)


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a submodule runs each package's __init__."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@cache
def direct_imports(path: Path, package: str) -> frozenset[str]:
    visitor = _Imports(package)
    visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    found = set()
    for name in visitor.names:
        found.update(n for n in _with_parents(name) if module_file(n) is not None)
    return frozenset(found)


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def loaded_modules(script: Path) -> set[str]:
    """Every facerefine module reachable from ``script`` through imports (plumbing are leaves)."""
    seen: set[str] = set()
    todo = list(direct_imports(script, PACKAGE))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in PLUMBING:
            continue
        path = module_file(name)
        assert path is not None
        todo.extend(direct_imports(path, _package_of(name, path)) - seen)
    return seen


def runs_code(path: Path) -> bool:
    """False for an empty (or docstring-only) __init__.py: it cannot change anything. The check
    is made every run, so code added to such a file makes it count from then on."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return bool(body)


def script_of(cmd: str) -> Path:
    """The stage script in ``python stages/x.py --flag ...``."""
    scripts = [token for token in shlex.split(cmd) if token.endswith(".py")]
    assert len(scripts) == 1, f"expected one .py script in cmd {cmd!r}"
    return Path(scripts[0])


def covered(relpath: Path, deps: list[Path]) -> bool:
    return any(relpath == dep or dep in relpath.parents for dep in deps)


@cache
def pipeline_stages() -> dict[str, tuple[str, list[Path]]]:
    """Stage name -> (cmd, dep paths relative to the repo), as DVC resolves them."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        stages = {}
        for stage in repo.index.stages:
            if not stage.cmd:  # imported/.dvc-file stages have no script
                continue
            deps = [Path(dep.fs_path).resolve().relative_to(REPO) for dep in stage.deps]
            stages[stage.addressing] = (stage.cmd, deps)
        return stages


def uncovered_modules(cmd: str, deps: list[Path]) -> list[str]:
    script = script_of(cmd)
    missing = [] if covered(script, deps) else [f"{script} (the stage script itself)"]
    for name in sorted(loaded_modules(REPO / script)):
        path = module_file(name)
        if name in PLUMBING or name in FOLLOWED_NOT_DEPS or not runs_code(path):
            continue
        rel = path.relative_to(REPO)
        if not covered(rel, deps):
            missing.append(str(rel))
    return missing


def test_every_loaded_module_is_a_dep():
    stages = pipeline_stages()
    assert "prompts" in stages and any(name.startswith("train_cyclegan@") for name in stages)
    problems = {name: uncovered_modules(cmd, deps) for name, (cmd, deps) in stages.items()}
    problems = {name: missing for name, missing in problems.items() if missing}
    report = "\n".join(f"  {name}: {', '.join(missing)}" for name, missing in sorted(problems.items()))
    pairs = sum(len(missing) for missing in problems.values())
    assert not problems, (f"{pairs} (stage, module) pairs not covered by the stage's deps in dvc.yaml "
                          f"(add the file or a folder above it):\n{report}")


def unused_source_deps(cmd: str, deps: list[Path]) -> list[str]:
    """Deps under src/facerefine that cover no module the stage loads: a change there re-runs
    the stage for nothing (the converse of :func:`uncovered_modules`)."""
    loaded = [module_file(name).relative_to(REPO) for name in loaded_modules(REPO / script_of(cmd))]
    source = [dep for dep in deps if Path("src") / PACKAGE in (dep, *dep.parents)]
    return [str(dep) for dep in source if not covered_any(dep, loaded)]


def covered_any(dep: Path, files: list[Path]) -> bool:
    return any(covered(f, [dep]) for f in files)


def test_no_source_dep_is_unused():
    stages = pipeline_stages()
    problems = {name: unused_source_deps(cmd, deps) for name, (cmd, deps) in stages.items()}
    problems = {name: unused for name, unused in problems.items() if unused}
    assert not problems, f"deps no module of the stage's script loads (drop them from dvc.yaml): {problems}"


def test_weights_families_and_banners_reach_only_their_stages():
    """Generation loads FLUX only: rewording a banner or touching DeepFace/LPIPS/CLIP code does
    not make its (expensive) outputs stale."""
    stages = pipeline_stages()
    for name in ("generate_schnell", "refine_dev"):
        _, deps = stages[name]
        for path in ("banners.py", "weights/deepface.py", "weights/lpips.py", "weights/clip.py",
                     "weights/inception.py", "weights/lora.py"):
            assert not covered(Path("src/facerefine") / path, deps), f"{name} depends on {path}"
        assert covered(Path("src/facerefine/weights/flux.py"), deps)
    _, report_deps = stages["report"]
    assert not any(covered(Path("src/facerefine/weights") / f, report_deps)
                   for f in ("flux.py", "standins.py", "hf.py"))


def test_plumbing_modules_exist():
    """A renamed plumbing module must not silently widen the exclusion."""
    for name in PLUMBING:
        assert module_file(name) is not None, name


# --- the walker itself, on a throwaway package ---------------------------------------------

@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    pkg = tmp_path / "src" / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Docstring only."""\n')
    (pkg / "sub" / "__init__.py").write_text("from facerefine.sub import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("X = 1\n")
    (pkg / "lazy.py").write_text("def f():\n    from facerefine import late\n")
    (pkg / "late.py").write_text("Y = 2\n")
    (pkg / "typed.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    from facerefine import never\n")
    (pkg / "never.py").write_text("Z = 3\n")
    (pkg / "tracking.py").write_text("from facerefine import behind_plumbing\n")
    (pkg / "behind_plumbing.py").write_text("W = 4\n")
    (pkg / "rel.py").write_text("from .sub.leaf import X\nfrom . import late\n")
    monkeypatch.setitem(globals(), "SRC", tmp_path / "src")
    direct_imports.cache_clear()
    yield tmp_path
    direct_imports.cache_clear()


def test_walk_follows_lazy_and_submodule_imports(fake_package):
    script = fake_package / "s.py"
    script.write_text("import os\nfrom facerefine import lazy, sub\nfrom facerefine.typed import *\n"
                      "from facerefine import tracking\n")
    assert loaded_modules(script) == {"facerefine", "facerefine.lazy", "facerefine.late", "facerefine.sub",
                                      "facerefine.sub.leaf", "facerefine.typed", "facerefine.tracking"}


def test_walk_resolves_relative_imports(fake_package):
    script = fake_package / "s.py"
    script.write_text("import facerefine.rel\n")
    assert loaded_modules(script) >= {"facerefine.sub", "facerefine.sub.leaf", "facerefine.late"}


def test_docstring_only_init_runs_no_code(fake_package):
    assert not runs_code(fake_package / "src" / PACKAGE / "__init__.py")
    assert runs_code(fake_package / "src" / PACKAGE / "sub" / "__init__.py")


def test_coverage_by_file_or_folder():
    deps = [Path("src/facerefine/models"), Path("src/facerefine/io.py")]
    assert covered(Path("src/facerefine/models/esa.py"), deps)
    assert covered(Path("src/facerefine/io.py"), deps)
    assert not covered(Path("src/facerefine/models.py"), deps)
    assert not covered(Path("src/facerefine/iox.py"), deps)
