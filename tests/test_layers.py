"""The package's import direction (docs/architecture.md, "Import direction"), checked over every
module and every import in it, those inside functions included: the subpackages form no
circle, and none imports one above it."""

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "scaling"

# What each part may not import, whatever else changes: the layers above it.
FORBIDDEN = {
    "model": {"training", "launching", "planning", "fitting", "demo", "cli", "data"},
    "training": {"launching", "planning", "fitting", "demo", "cli"},
    "fitting": {"torch", "model", "training", "launching", "planning", "demo", "cli", "plotting"},
    "published": {"fitting", "results", "rundir", "torch", "cli"},
    "planning": {"launching", "training", "demo", "cli", "torch"},
    "launching": {"demo", "cli", "fitting"},
    "pruner": {"demo", "cli"},
    "plotting": {"training", "launching", "planning", "demo", "cli", "torch"},
    "rundir": {"training", "launching", "planning", "fitting", "demo", "cli", "torch"},
    "records": {"rundir", "training", "launching", "planning", "fitting", "demo", "cli"},
}


def _part(module: str) -> str:
    """scaling.fitting.base -> fitting; scaling.rundir -> rundir; torch.nn -> torch."""
    parts = module.split(".")
    if parts[0] != "scaling":
        return parts[0]
    return parts[1] if len(parts) > 1 else "scaling"


def import_graph() -> dict[str, set[str]]:
    """Part -> the parts (and torch) it imports, from every import statement of its files."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        source = _part(".".join(relative.parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
                if node.module == "scaling":
                    names = [f"scaling.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.startswith(("scaling", "torch")) and _part(name) != source:
                    graph[source].add(_part(name))
    return graph


def test_no_part_imports_a_layer_above_it():
    graph = import_graph()
    wrong = {part: sorted(graph[part] & above) for part, above in FORBIDDEN.items()}
    assert not any(wrong.values()), wrong
    assert {part for part, imported in graph.items() if "cli" in imported} == {"__main__"}


def test_the_parts_form_no_circle():
    graph = {part: imported - {"torch", "scaling"} for part, imported in import_graph().items()}
    done: set[str] = set()

    def visit(part: str, trail: list[str]) -> None:
        assert part not in trail, f"import circle: {' -> '.join([*trail, part])}"
        if part in done:
            return
        for other in sorted(graph.get(part, ())):
            visit(other, [*trail, part])
        done.add(part)

    for part in sorted(graph):
        visit(part, [])
