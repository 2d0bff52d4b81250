"""The layering rules of docs/architecture.md, read from the code's own import statements.

Every import counts: at the top of a module, inside a function, or only for type checking. A test of
our own rather than import-linter: the rules below need the standard library's module list ("the
core imports the standard library only") and a cycle search over every module, which import-linter's
contracts do not express directly; an ast walk of 30 files does both, with no dependency to keep.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = "smartcti_gateway"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
# the only production modules that may load a simulator: the command line and the composition root
SIM_LOADERS = {f"{PACKAGE}.cli", f"{PACKAGE}.gateway"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports, as absolute names (``from pkg import mod`` -> pkg.mod when a module)."""
    path = MODULES[name]
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                out.add(full if full in MODULES else target)
    return {m for m in out if m and m != "__future__"}


GRAPH = {name: imports_of(name) for name in MODULES}


def internal(name: str) -> set[str]:
    return {m for m in GRAPH[name] if m == PACKAGE or m.startswith(PACKAGE + ".")}


def test_the_graph_is_read():
    assert f"{PACKAGE}.pabx.base" in internal(f"{PACKAGE}.pabx.digitro.driver")
    assert f"{PACKAGE}.core.engine" in internal(f"{PACKAGE}.link")
    assert "aiohttp" in GRAPH[f"{PACKAGE}.gateway"]
    assert f"{PACKAGE}.sim.digitro" in internal(f"{PACKAGE}.cli")      # an import inside a function counts


def test_the_core_imports_the_standard_library_only():
    for name in (m for m in MODULES if m.startswith(f"{PACKAGE}.core")):
        for imported in GRAPH[name]:
            top = imported.split(".")[0]
            assert top in sys.stdlib_module_names or imported.startswith(f"{PACKAGE}.core"), \
                f"{name} imports {imported}: the core has no I/O and no dependency"


def test_production_never_imports_a_simulator():
    for name in MODULES:
        if name.startswith(f"{PACKAGE}.sim") or name in SIM_LOADERS:
            continue
        bad = sorted(m for m in internal(name) if m.startswith(f"{PACKAGE}.sim"))
        assert not bad, f"{name} imports {bad}: only {sorted(SIM_LOADERS)} may load a simulator"


def test_one_pabx_package_never_imports_another():
    def family(module: str) -> str | None:
        parts = module.split(".")
        return parts[2] if len(parts) > 2 and parts[1] == "pabx" and parts[2] != "base" else None

    for name in MODULES:
        mine = family(name)
        if mine is None:
            continue
        for imported in internal(name):
            theirs = family(imported)
            assert theirs in (None, mine), f"{name} imports {imported}: one PABX package never uses another"


def test_no_import_cycles():
    """Tarjan's strongly connected components over every internal import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in internal(v):
            if w not in MODULES:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in internal(v):
                cycles.append(sorted(component))

    for v in MODULES:
        if v not in index:
            visit(v)
    assert cycles == [], f"import cycles: {cycles}"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith(f"{PACKAGE}.pabx.")
                                        and m.count(".") == 2 and not m.endswith(".base")))
def test_every_driver_package_is_in_the_registry(name):
    from smartcti_gateway.pabx import DRIVERS
    assert name.rsplit(".", 1)[1] in DRIVERS


def test_the_ans_protocol_package_stays_out_of_the_pabx_and_the_link():
    """ans/ is used by the link and the daemon; it never reaches into a PABX, a simulator or the link."""
    for name in (m for m in MODULES if m.startswith(f"{PACKAGE}.ans")):
        bad = sorted(m for m in internal(name) if m.startswith((f"{PACKAGE}.pabx", f"{PACKAGE}.sim"))
                     or m in (f"{PACKAGE}.link", f"{PACKAGE}.gateway"))
        assert not bad, f"{name} imports {bad}"
