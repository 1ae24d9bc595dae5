"""Dependencies point one way (design §2): contracts → engine → stream → ui / entry points,
with training/ and bench/ on top, and no module-level import cycle anywhere.

Read statically (``ast``), so imports inside functions count too: a lazy import is
for start-up time, never a way around the layering.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "stream", "ui", "training", "bench")
#: What each package may import from the project (itself always).
ALLOWED = {"engine": set(), "stream": {"engine"}, "ui": {"engine", "stream"},
           "training": {"engine", "stream"}, "bench": {"engine", "stream", "training", "ui"},
           "run_live": {"engine", "stream", "ui"}}
#: Entry points on top of training (design §5): the Ray batch runner reads dataset roots
#: through the dataset readers and prints the MEGC evaluation table of training.evaluate.
ENTRY_POINTS_ON_TRAINING = {"stream.batch"}
#: The bottom of the graph: project imports allowed in the contracts module.
BOTTOM = {"engine.contracts": {"engine.config"}, "engine.config": set()}


def _modules() -> dict[str, Path]:
    out = {"run_live": ROOT / "run_live.py"}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path, top_level_only: bool = False) -> set[str]:
    """Project modules ``name`` imports (``from x import y`` counts y when it is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this package
                base = name.split(".")
                if not path.name == "__init__.py":
                    base = base[:-1]
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}
    return {m for m in found if m in MODULES}


def test_every_package_imports_only_the_layers_below_it():
    bad = []
    for name, path in MODULES.items():
        top = name.split(".")[0]
        for dep in _imports(name, path):
            dep_top = dep.split(".")[0]
            if name in ENTRY_POINTS_ON_TRAINING and dep_top == "training":
                continue
            if dep_top != top and dep_top not in ALLOWED[top]:
                bad.append(f"{name} imports {dep}")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


@pytest.mark.parametrize("name", sorted(BOTTOM))
def test_the_contracts_sit_at_the_bottom(name):
    assert _imports(name, MODULES[name]) <= BOTTOM[name]


def test_no_import_cycle_between_modules():
    graph = {n: _imports(n, p, top_level_only=True) - {n} for n, p in MODULES.items()}
    # a package's __init__ importing its own submodules is not a cycle through them
    graph = {n: {d for d in deps if not d.startswith(n + ".")} for n, deps in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_graph_is_read_at_all():
    """Guard against a walker that finds nothing (and so passes everything)."""
    assert "engine.contracts" in _imports("stream.chain", MODULES["stream.chain"])
    assert len(MODULES) > 60
