"""The package's import layers (PLAN / issue 8): a module imports only from its own layer or below, and
imports within a layer close no cycle. Every import counts, also those inside functions and TYPE_CHECKING."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "ros2_stereo_depth"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Lowest first. A module's layer is that of its longest matching prefix.
LAYERS = {
    "config": 0, "normalisation": 0, "pair": 0, "geometry": 0, "fileio": 0, "image_encoding": 0, "__init__": 0,
    "model": 1, "data": 1,
    "artifacts": 2,
    "inference": 3,
    "ros": 4, "training": 4, "evaluation": 4,
    "tools": 5,
    "cli": 6, "__main__": 6,
}

# Imports in OTHER helpers' areas that still break the layering on this branch (importer -> imported).
# Keep the list shrinking: the lead empties it when the branches are merged.
# Empty on this branch (data.readers -> training.batches was fixed on main in e0eada6).
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise AssertionError(f"{PACKAGE}.{module} is in no layer: add it to LAYERS")


def imported_modules(path: Path) -> set[str]:
    """Package-relative names of the package modules `path` imports (a name imported from a package counts as
    its submodule when there is one)."""
    module = module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            bases = [a.name for a in node.names]
            names: list[str] = []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package[:len(package) - node.level + 1] if node.level > 1 else package
                base = ".".join([PACKAGE, *anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            bases, names = [base], [a.name for a in node.names]
        else:
            continue
        for base in bases:
            if base != PACKAGE and not base.startswith(PACKAGE + "."):
                continue
            rel = base[len(PACKAGE) + 1:]
            targets = [f"{rel}.{n}".lstrip(".") for n in names]
            subs = [t for t in targets if (ROOT / t.replace(".", "/")).with_suffix(".py").is_file()
                    or (ROOT / t.replace(".", "/")).is_dir()]
            found.update(subs or [rel or "__init__"])
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imported_modules(p) for p in sorted(ROOT.rglob("*.py"))}


def test_no_import_goes_up_a_layer() -> None:
    upward = sorted((m, t, layer(m), layer(t)) for m, targets in import_graph().items() for t in targets
                    if layer(t) > layer(m) and (m, t) not in KNOWN_VIOLATIONS)
    assert upward == [], "imports that go up a layer (importer, imported, layers):\n" + "\n".join(map(str, upward))


def test_no_import_cycle() -> None:
    graph = {m: {t for t in targets if (m, t) not in KNOWN_VIOLATIONS} for m, targets in import_graph().items()}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_known_violations_are_still_real() -> None:
    """An entry that no longer happens must leave the allow-list."""
    graph = import_graph()
    stale = sorted(v for v in KNOWN_VIOLATIONS if v[1] not in graph.get(v[0], set()))
    assert stale == []


def test_the_checker_sees_upward_and_relative_imports() -> None:
    """Negative control on this package's own files: relative imports resolve to the right module."""
    select = imported_modules(ROOT / "inference" / "select.py")
    assert {"artifacts.engine_build", "artifacts.weights", "artifacts.sidecar", "inference.base"} <= select
    assert layer("inference.select") == 3 and layer("tools.export") == 5 and layer("artifacts.weights") == 2
