"""The package's shape: imports point one way (no cycles, function-level imports included), files stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import moddecode

PACKAGE = Path(moddecode.__file__).parent
MAX_LINES = 450

# Temporary exceptions, each to be removed by the change named beside it (none at present).
ALLOWED_EDGES: set[tuple[str, str]] = set()


def module_files() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package (a package is its __init__.py)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph(files: dict[str, Path]) -> nx.DiGraph:
    """module -> each moddecode module it imports anywhere in its body (lazy imports count too).

    `from X import name` points at X.name when that is a module, else at X; an import of a module
    does not add its parent packages (they run first, but every module would then reach `moddecode`).
    """
    graph = nx.DiGraph()
    graph.add_nodes_from(files)
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        type_only = {id(n) for block in ast.walk(tree) if _is_type_checking_block(block)
                     for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in type_only:  # `if TYPE_CHECKING:` imports never run
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in files:  # `import moddecode.x.y` or a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph.add_edge(name, target)
    return graph


def _is_type_checking_block(node) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"))


def test_the_graph_sees_module_and_function_level_imports():
    graph = import_graph(module_files())
    assert graph.has_edge("moddecode.eval.sweep.run", "moddecode.eval.sweep.backends")  # module level
    assert graph.has_edge("moddecode.eval.sweep.backends", "moddecode.mod")  # inside Worker.__init__
    assert graph.has_edge("moddecode.eval.report.summary", "moddecode.eval.sweep.layout")  # `from ..sweep.layout`


def test_no_import_cycles():
    graph = import_graph(module_files())
    graph.remove_edges_from(ALLOWED_EDGES)
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + [c[0]]) for c in sorted(cycles, key=len)[:5])


def test_only_the_cli_imports_the_cli():
    """The command line is the outermost layer: library, eval and server code never reach into it."""
    graph = import_graph(module_files())
    inward = sorted((a, b) for a, b in graph.edges
                    if _in(b, "moddecode.cli") and not _in(a, "moddecode.cli"))
    assert graph.has_node("moddecode.cli.evaluate") and not inward, f"imports of the CLI from outside it: {inward}"


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_report_reads_only_the_run_folder_layout_of_the_sweep():
    graph = import_graph(module_files())
    report = [n for n in graph if n.startswith("moddecode.eval.report")]
    sweep_deps = {t for n in report for t in graph.successors(n) if t.startswith("moddecode.eval.sweep")}
    assert sweep_deps == {"moddecode.eval.sweep.layout"}


def test_no_source_file_over_the_size_limit():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these by concept (limit {MAX_LINES} lines): {long}"
