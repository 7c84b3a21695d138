"""The package's shape, checked from its source: every import (module level, inside functions,
under TYPE_CHECKING alike) goes from a higher layer to a lower one, no module imports itself
back through others, and no file or function grows past the house's sizes."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tram"

# Lowest first; a unit (a module or package right under tram/) may import only from the layers
# before its own.
LAYERS: list[set[str]] = [
    {"tram", "types", "stamps", "files", "errors", "meter", "turns"},
    {"protocol", "kinds", "logs", "metrics"},
    {"config"},
    {"transport", "requestlog", "web"},
    {"limits", "vision", "routing", "server", "sharing"},
    {"store"},
    {"auth"},
    {"keys"},
    {"relay"},
    {"batches"},
    {"api"},
    {"app"},
    {"engines"},
    {"clients"},
    {"cli"},
    {"__main__"},
]
MAX_LINES = 450
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(path: Path, module: str) -> set[str]:
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in names if name == "tram" or name.startswith("tram.")}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {module: {name for name in _imports(path, module) if name in modules}
            for module, path in modules.items()}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tram"


def test_every_unit_has_a_layer() -> None:
    units = {_unit(module) for module in _modules()}
    assert units == set().union(*LAYERS)


def test_imports_go_down_the_layers_only() -> None:
    layer = {unit: index for index, units in enumerate(LAYERS) for unit in units}
    wrong = sorted(f"{module} -> {target}" for module, targets in _graph().items()
                   for target in targets
                   if _unit(target) != _unit(module)
                   and layer[_unit(target)] >= layer[_unit(module)])
    assert wrong == []


def test_no_import_cycles() -> None:
    graph = _graph()
    # A package's __init__ importing its own modules is how a package exports them: the
    # cycle through the package itself is not a dependency between modules.
    edges = {module: {t for t in targets if not module.startswith(t + ".")}
             for module, targets in graph.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_files_and_functions_stay_small() -> None:
    too_long = []
    for module, path in sorted(_modules().items()):
        text = path.read_text()
        if text.count("\n") > MAX_LINES:
            too_long.append(f"{module}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{module}.{node.name}: {length} lines")
    assert too_long == []
