"""The packages' layering, read from their imports (every ``import`` and ``from`` statement, at any depth).

cnn/ imports nothing of ours; ledger/ neither sweeper/ nor dashboards/; dashboards/ not sweeper/
(only sweeper's ``report`` command calls dashboards); and no cycle between top-level packages.
"""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OURS = ("cnn", "ledger", "sweeper", "dashboards")


def imports_of(package: str) -> dict[str, set[str]]:
    """``module path -> top-level packages of ours it imports``."""
    found = {}
    for path in sorted((REPO / package).rglob("*.py")):
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            targets |= {n.split(".")[0] for n in names if n.split(".")[0] in OURS}
        found[str(path.relative_to(REPO))] = targets - {package}
    return found


def edges() -> dict[str, set[str]]:
    return {p: set().union(*imports_of(p).values()) for p in OURS}


def test_cnn_imports_nothing_of_ours():
    assert {m: t for m, t in imports_of("cnn").items() if t} == {}


def test_ledger_imports_neither_sweeper_nor_dashboards():
    assert {m: t for m, t in imports_of("ledger").items() if t & {"sweeper", "dashboards"}} == {}


def test_dashboards_does_not_import_sweeper():
    assert {m: t for m, t in imports_of("dashboards").items() if "sweeper" in t} == {}


def test_only_the_report_command_calls_dashboards_from_sweeper():
    users = {m for m, t in imports_of("sweeper").items() if "dashboards" in t}
    assert users <= {"sweeper/app/cli.py"}


def test_no_cycle_between_top_level_packages():
    graph = edges()

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert [p for p in OURS if p in reach(p)] == []


def test_the_ledger_is_the_only_writer_of_mlflow():
    """Only ledger/ imports MLflow's client or fluent API (sweeper/ and dashboards/ go through it)."""
    writers = set()
    for package in ("sweeper", "dashboards", "cnn"):
        for path in (REPO / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if any(n == "mlflow" or n.startswith("mlflow.") for n in names):
                    writers.add(str(path.relative_to(REPO)))
    assert writers == set()
