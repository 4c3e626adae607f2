"""The package's shape: its modules import one another without a circle (type-checking imports included)."""

import ast
from pathlib import Path

import helpers

PACKAGE = Path(helpers.__file__).parent


def imports_of(path: Path) -> set[str]:
    """The package's modules that ``path`` imports, anywhere in it (``from .x import y``, ``from . import x``)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            modules |= {node.module} if node.module else {alias.name for alias in node.names}
    return {module.split(".")[0] for module in modules} - {"__init__"}


def circle_from(graph: dict[str, set[str]], start: str, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    if start in path:
        return path[path.index(start):] + (start,)
    for module in sorted(graph.get(start, ())):
        found = circle_from(graph, module, path + (start,))
        if found:
            return found
    return None


def test_no_module_imports_itself_through_others():
    graph = {path.stem: imports_of(path) for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    assert graph["embedder"] >= {"st_format"}  # the graph is read (the embedder saves through st_format)
    circles = [circle for module in graph if (circle := circle_from(graph, module))]
    assert not circles, f"import circles: {circles}"
