"""Architecture rules of the ``cdl_gitlab`` package, checked on its source with ``ast``.

- No import cycles between modules (imports inside functions count; imports under
  ``if TYPE_CHECKING:`` do not, they never run).
- Output only in the CLI: no ``print(`` outside ``cdl_gitlab/cli``.
- Each domain's errors live in its domain (no exception class is defined in the CLI).
- No use-case names in the library: the library is generic, use cases are configuration.
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import pytest

import cdl_gitlab

PACKAGE = Path(cdl_gitlab.__file__).resolve().parent
ROOT = PACKAGE.name
USE_CASE_NAMES = re.compile(r"fashion|\bbbc\b|news", re.IGNORECASE)


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every module name an import statement of ``tree`` can load (``TYPE_CHECKING`` excluded)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from (name for child in node.orelse for name in _imports(child, module, False))
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:  # a submodule, else an attribute of ``target``
                submodule = f"{target}.{alias.name}"
                yield submodule if submodule in MODULES else target
        yield from _imports(node, module, is_package)


def _resolve(name: str) -> str | None:
    """The package module ``name`` loads (a submodule or the module defining the attribute)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for module, path in MODULES.items():
        graph.add_node(module)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for name in _imports(tree, module, path.name == "__init__.py"):
            if not name.startswith(ROOT):
                continue
            target = _resolve(name)
            # a package's __init__ is loaded by every import of its submodules: only the
            # edges written in the code count, parents are not implied
            if target and target != module:
                graph.add_edge(module, target)
    return graph


def test_the_import_graph_sees_function_level_imports() -> None:
    graph = import_graph()
    assert graph.has_edge("cdl_gitlab.cli.data_cmd", "cdl_gitlab.data.steps.pipeline")


def test_no_import_cycles() -> None:
    cycles = sorted(
        " -> ".join([*cycle, cycle[0]])
        for cycle in (sorted_cycle(c) for c in nx.simple_cycles(import_graph()))
    )
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_no_import_cycles_between_packages() -> None:
    """The packages of ``cdl_gitlab`` (data, model, registry, deploy, serving ...) form layers."""
    packages = nx.DiGraph()
    for source, target in import_graph().edges:
        top_source, top_target = (".".join(name.split(".")[:2]) for name in (source, target))
        if top_source != top_target:
            packages.add_edge(top_source, top_target)
    cycles = sorted(" -> ".join([*c, c[0]]) for c in map(sorted_cycle, nx.simple_cycles(packages)))
    assert cycles == [], "import cycles between packages:\n" + "\n".join(cycles)


def sorted_cycle(cycle: list[str]) -> list[str]:
    """The cycle starting at its smallest module name (stable messages)."""
    start = cycle.index(min(cycle))
    return cycle[start:] + cycle[:start]


def _calls(tree: ast.AST, name: str) -> Iterator[int]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name:
            yield node.lineno


def _outside_cli() -> Iterator[tuple[str, Path]]:
    for module, path in MODULES.items():
        if module != f"{ROOT}.cli" and not module.startswith(f"{ROOT}.cli."):
            yield module, path


def test_output_only_in_the_cli() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for _module, path in _outside_cli()
        for line in _calls(ast.parse(path.read_text(encoding="utf-8")), "print")
    ]
    assert offenders == [], "print() outside cdl_gitlab/cli (return results or log):\n" + (
        "\n".join(offenders)
    )


def test_errors_are_defined_in_their_domain_not_in_the_cli() -> None:
    offenders = []
    for module, path in MODULES.items():
        if not module.startswith(f"{ROOT}.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Name | ast.Attribute)
                and ast.unparse(base).endswith(("Error", "Exception"))
                for base in node.bases
            ):
                offenders.append(f"{module}.{node.name}")
    assert offenders == [], f"exception classes defined in the CLI: {offenders}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_use_case_names_in_the_library(module: str) -> None:
    path = MODULES[module]
    hits = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if USE_CASE_NAMES.search(line)
    ]
    assert USE_CASE_NAMES.search(path.relative_to(PACKAGE).as_posix()) is None
    assert hits == [], "use-case names in the library:\n" + "\n".join(hits)


def test_the_design_lives_in_the_repository() -> None:
    """``docs/design.md`` is the design of record; nothing points to a design outside."""
    repo = PACKAGE.parents[2]
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    assert (repo / "docs" / "design.md").is_file()
    needle = "DESIGN" + ".md"  # written apart so that this file does not match itself
    offenders = [
        name
        for name in tracked
        if name and (repo / name).is_file() and needle in (repo / name).read_text(errors="ignore")
    ]
    assert offenders == [], f"files pointing to the old design outside the repository: {offenders}"
