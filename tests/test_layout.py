"""The tree reads as the architecture, and stays that way: imports run down the floors (engine and
numerics at the bottom; cohort, methods and power; jobs (with the config keys they validate) and
report; the commands and the public surface on top), no module imports another that imports it back, no module is over 400
lines, and the top of the package holds only the public surface, the entry point and the
commands' short names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SIM = Path(__file__).resolve().parents[1] / "sim"
FLOORS = {  # package -> floor; a module may import its own floor and those below
    "engine": 0, "numerics": 0, "cohort": 2, "methods": 2, "power": 2, "jobs": 3, "report": 3,
    "cli": 4, "bench": 4, "api": 4, "__init__": 4, "__main__": 4, "match": 4, "sensitivity": 4, "weight": 4, "conf": 0,
}
TOP = {"__init__.py", "__main__.py", "api.py", "match.py", "sensitivity.py", "weight.py"}


def _name(path: Path) -> str:
    parts = path.relative_to(SIM.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, node: ast.ImportFrom) -> str | None:
    if node.level == 0:
        return node.module
    base = module.split(".")
    pkg = base[: len(base) - node.level + (1 if MODULES.get(module, Path()).name == "__init__.py" else 0)]
    return ".".join(pkg + ([node.module] if node.module else []))


MODULES = {_name(p): p for p in SIM.rglob("*.py")}


def _imports(module: str, *, module_level: bool, type_only: bool = False) -> set[str]:
    """The sim modules `module` imports (module level only: not in functions; under TYPE_CHECKING
    only with type_only)."""
    tree = ast.parse(MODULES[module].read_text())
    found: set[str] = set()

    def visit(node, top: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if not module_level:
                    visit(child, False)
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test) and not type_only:
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("sim"))
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(module, child)
                if target and target.startswith("sim"):
                    for a in child.names:
                        sub = f"{target}.{a.name}"
                        found.add(sub if sub in MODULES else target)
            visit(child, top)

    visit(tree, True)
    return {m for m in found if m in MODULES and m != module}


def _floor(module: str) -> int:
    parts = module.split(".")
    return FLOORS[parts[1] if len(parts) > 1 else "__init__"]


def test_no_import_circles():
    graph = {m: _imports(m, module_level=True) for m in MODULES}
    # a package imports its submodules when it is imported: edges to a package reach its __init__ only
    seen, stack, cycles = set(), [], []

    def walk(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for n in sorted(graph[m]):
            walk(n)
        stack.pop()

    for m in sorted(graph):
        walk(m)
    assert not cycles, cycles[:5]


def test_imports_run_down_the_floors():
    """Module-level imports never reach a higher floor (a lazy import in a function may, where a
    lower floor hands back to a higher one on purpose: listed here with its reason)."""
    upward = sorted((m, n) for m in MODULES for n in _imports(m, module_level=True) if _floor(n) > _floor(m))
    assert not upward, upward


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_400_lines(module):
    assert len(MODULES[module].read_text().splitlines()) <= 400


def test_the_top_holds_the_public_surface_and_the_entry_point():
    files = {p.name for p in SIM.glob("*.py")}
    assert files == TOP, sorted(files - TOP)
    for shim in ("match.py", "sensitivity.py", "weight.py"):  # `python -m sim.match` keeps its name; the command is in sim.cli
        assert len((SIM / shim).read_text().splitlines()) <= 8


def test_no_two_modules_import_each_other_even_lazily():
    """An import inside a function, or one for type hints only, is still a dependency: two modules
    never import each other, so one of them always sits lower (its import of the other is the one
    to move)."""
    graph = {m: _imports(m, module_level=False, type_only=True) for m in MODULES}
    pairs = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if a in graph.get(b, ())})
    assert not pairs, pairs
