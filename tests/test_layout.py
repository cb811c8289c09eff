"""The package layout holds: no import circle, a small root, short modules and classes.

The import graph is read from the source (every `import` and `from ... import` in every
module, function-level ones included), so an import made lazily to dodge a circle is
still seen as one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pageowner"
ROOT_MODULES = {"__init__", "__main__", "model", "errors", "units", "demo"}
MAX_MODULE_LINES = 1000
MAX_CLASS_LINES = 400


def module_names() -> dict[str, Path]:
    """Map each module's dotted name to its file."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Return the pageowner modules one module imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pageowner.dump import parallel` imports a module, not a name.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    """Return every pageowner module's imports of other pageowner modules."""
    modules = module_names()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one import circle as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_circles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    source = tmp_path / "pkg" / "sub" / "mod.py"
    source.parent.mkdir(parents=True)
    source.write_text("def f():\n    from pageowner.sim.boot import run_boot\n"
                      "from . import other\nfrom ..top import x\nimport pageowner.sort.scan as s\n")
    modules = {name: Path() for name in ("pageowner.sim.boot", "pkg.sub.other", "pkg.top",
                                         "pkg.sub.mod", "pageowner.sort.scan")}
    assert imported_modules("pkg.sub.mod", source, modules) == {
        "pageowner.sim.boot", "pkg.sub.other", "pkg.top", "pageowner.sort.scan"}


def test_no_import_circle() -> None:
    graph = import_graph()
    assert len(graph) > 50 and graph["pageowner.sort.engine"], "the graph missed modules"
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


# The layers, lowest first; a module may import only from its own layer or lower ones.
LAYERS = [
    # The root package holds only __version__.
    {"pageowner", "pageowner.model", "pageowner.errors", "pageowner.units"},
    {"pageowner.kernel"},
    {"pageowner.dump"},
    {"pageowner.sort", "pageowner.analyze", "pageowner.symbols"},
    {"pageowner.sim", "pageowner.live", "pageowner.vmcore", "pageowner.fleet"},
    {"pageowner.report"},
    {"pageowner.demo"},
    {"pageowner.cli", "pageowner.__main__"},
]


def layer_of(module: str) -> int:
    """Return the index of the layer a module belongs to."""
    for depth in (3, 2, 1):
        prefix = ".".join(module.split(".")[:depth])
        for index, layer in enumerate(LAYERS):
            if prefix in layer:
                return index
    raise AssertionError(f"{module} is in no layer; add its package to LAYERS")


def test_imports_point_down_the_layers() -> None:
    upward = sorted(f"{name} -> {target}" for name, targets in import_graph().items()
                    for target in targets if layer_of(target) > layer_of(name))
    assert upward == []


def test_root_holds_only_the_base_modules() -> None:
    root_modules = {path.stem for path in PACKAGE.glob("*.py")}
    assert root_modules == ROOT_MODULES


@pytest.mark.parametrize("name", sorted(module_names()))
def test_modules_and_classes_are_short(name: str) -> None:
    path = module_names()[name]
    text = path.read_text()
    assert text.count("\n") <= MAX_MODULE_LINES, f"{path}: over {MAX_MODULE_LINES} lines"
    long_classes = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.ClassDef) and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES
    ]
    assert long_classes == [], f"{path}: classes over {MAX_CLASS_LINES} lines"


# Third-party packages each layer keeps to itself.
CONFINED = {"elftools": "pageowner.symbols", "rich": "pageowner.report", "click": "pageowner.cli"}


def third_party_imports(path: Path) -> set[str]:
    """Return the top-level names of every package a module imports, lazily or not."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.partition(".")[0])
    return names


def test_third_party_packages_stay_in_their_layer() -> None:
    strays = sorted(f"{name} imports {package}" for name, path in module_names().items()
                    for package in third_party_imports(path) & CONFINED.keys()
                    if not name.startswith(CONFINED[package]))
    assert strays == []
    # The check sees the lazy import inside the ELF reader.
    assert "elftools" in third_party_imports(module_names()["pageowner.symbols.elfimage"])
