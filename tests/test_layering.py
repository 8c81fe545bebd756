"""The house's layering, read from every ``import`` and ``from`` statement of our packages, at any depth.

The rooms and what each may import are written once, in :data:`ALLOWED`; the flow of a sweep
(YAML -> plan -> Ray trials -> ledger -> report) reads down the table. Also checked: no module
imports another module's private name (``from x import _y``), only ledger/ imports MLflow, and
each check fails on a deliberately bad import (the ``*_fails_on_*`` tests).
"""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: room -> the rooms it may import (besides itself). A room is a package or a subpackage; a
#: module directly in a package (``sweeper/exits.py``) belongs to the package's base room.
ALLOWED: dict[str, set[str]] = {
    "cnn": set(),
    "ledger": {"cnn"},
    "sweeper": {"cnn", "ledger"},  # sweeper/*.py: the codes and the API every room shares
    "sweeper.spec": {"cnn", "ledger", "sweeper"},
    "sweeper.plan": {"cnn", "ledger", "sweeper", "sweeper.spec"},
    "sweeper.trials": {"cnn", "ledger", "sweeper", "sweeper.spec", "sweeper.plan"},
    "sweeper.app": {"cnn", "ledger", "sweeper", "sweeper.spec", "sweeper.plan", "sweeper.trials", "dashboards"},
    "dashboards": {"cnn", "ledger"},
}
#: The public API (``sweeper/api.py``) sits on top of every room of sweeper.
API_MODULES = {"sweeper/api.py", "sweeper/__init__.py", "sweeper/__main__.py"}


def room_of(module: str) -> str | None:
    """``sweeper.trials.executor`` -> ``sweeper.trials``; ``sweeper.exits`` -> ``sweeper``; not ours -> None."""
    parts = module.split(".")
    if parts[0] not in {r.split(".")[0] for r in ALLOWED}:
        return None
    if len(parts) >= 2 and ".".join(parts[:2]) in ALLOWED:
        return ".".join(parts[:2])
    return parts[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1] + ["__init__"]
    return ".".join(parts)


def imported(tree: ast.AST, module: str) -> list[tuple[str, list[str]]]:
    """``(module imported, names taken from it)`` of every import statement, relative ones resolved."""
    out = []
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.append((base, [alias.name for alias in node.names]))
    return out


def sources(packages=("cnn", "ledger", "sweeper", "dashboards")):
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(), str(path))


def upward_imports(files) -> list[str]:
    """``file: room -> room`` for every import the table does not allow."""
    bad = []
    for path, tree in files:
        rel = str(path.relative_to(REPO))
        here = room_of(module_name(path))
        if rel in API_MODULES:
            continue
        for target, names in imported(tree, module_name(path)):
            room = room_of(target)
            if room is None or room == here:
                continue
            if room not in ALLOWED[here]:
                bad.append(f"{rel}: {here} -> {room} ({target})")
                continue
            # ``from sweeper import run``: the names may be rooms of their own
            bad += [f"{rel}: {here} -> {room_of(f'{target}.{n}')} ({target}.{n})" for n in names
                    if room_of(f"{target}.{n}") not in ALLOWED[here] | {here}]
    return sorted(set(bad))


def private_imports(files) -> list[str]:
    """``from x import _y`` of our modules across modules (a module's own tests are not checked here)."""
    bad = []
    for path, tree in files:
        for target, names in imported(tree, module_name(path)):
            if room_of(target) is None:
                continue
            bad += [f"{path.relative_to(REPO)}: {target}.{n}" for n in names if n.startswith("_") and n != "__version__"]
    return sorted(bad)


def test_every_import_follows_the_table():
    assert upward_imports(sources()) == []


def test_no_module_imports_another_modules_private_names():
    assert private_imports(sources()) == []


def _fake(rel: str, code: str):
    return [(REPO / rel, ast.parse(code))]


def test_the_table_check_fails_on_an_upward_import():
    """The run room importing the app room (the progress line) is exactly what must fail."""
    assert upward_imports(_fake("sweeper/trials/executor.py", "from sweeper.app.progress import Progress")) == [
        "sweeper/trials/executor.py: sweeper.trials -> sweeper.app (sweeper.app.progress)"]
    assert upward_imports(_fake("cnn/model.py", "import ledger.tracking"))
    assert upward_imports(_fake("dashboards/report.py", "from sweeper import plan"))
    assert upward_imports(_fake("sweeper/plan/points.py", "from sweeper.trials import trial"))
    assert upward_imports(_fake("sweeper/plan/points.py", "from sweeper.exits import first_line")) == []


def test_the_private_check_fails_on_a_private_import():
    assert private_imports(_fake("sweeper/trials/executor.py", "from sweeper.trials.session import _first_line")) == [
        "sweeper/trials/executor.py: sweeper.trials.session._first_line"]
    assert private_imports(_fake("sweeper/trials/executor.py", "from .session import _x"))


def test_no_cycle_between_rooms():
    graph: dict[str, set[str]] = {room: set() for room in ALLOWED}
    for path, tree in sources():
        if str(path.relative_to(REPO)) in API_MODULES:
            continue
        here = room_of(module_name(path))
        for target, _ in imported(tree, module_name(path)):
            room = room_of(target)
            if room is not None and room != here:
                graph[here].add(room)

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert [room for room in graph if room in reach(room)] == []


def test_the_ledger_is_the_only_writer_of_mlflow():
    """Only ledger/ imports MLflow's client or fluent API (sweeper/ and dashboards/ go through it)."""
    writers = set()
    for path, tree in sources(("sweeper", "dashboards", "cnn")):
        for target, _ in imported(tree, module_name(path)):
            if target == "mlflow" or target.startswith("mlflow."):
                writers.add(str(path.relative_to(REPO)))
    assert writers == set()
