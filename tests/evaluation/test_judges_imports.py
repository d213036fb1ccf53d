"""The judges package has no import cycle (module-level or inside functions), and one
place, factory.py, picks the NLI judge. Parses the sources; imports nothing."""
from __future__ import annotations

import ast
from pathlib import Path

import unlearnlm

PACKAGE = "unlearnlm.evaluation.judges"
JUDGES_DIR = Path(unlearnlm.__file__).resolve().parent / "evaluation" / "judges"


def _judges_imports(tree: ast.Module, names: set[str]) -> set[str]:
    """The judges modules that ``tree`` imports anywhere (top level or in a function)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == PACKAGE:
                out |= {a.name for a in node.names if a.name in names}
            elif node.module.startswith(PACKAGE + "."):
                out.add(node.module[len(PACKAGE) + 1 :].split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out |= {a.name for a in node.names if a.name in names}
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith(PACKAGE + "."):
                    out.add(a.name[len(PACKAGE) + 1 :].split(".")[0])
    return out & names


def test_judges_import_graph_is_acyclic_and_one_factory():
    trees = {p.stem: ast.parse(p.read_text(encoding="utf-8")) for p in sorted(JUDGES_DIR.glob("*.py"))}
    assert {"factory", "labels", "nli", "nli_offline", "nli_pairs"} <= set(trees)
    graph = {name: _judges_imports(tree, set(trees)) - {name} for name, tree in trees.items()}

    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(name):] + [name]))
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, path + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])

    defining = sorted(
        name for name, tree in trees.items()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "load_nli_judge"
    )
    assert defining == ["factory"]
