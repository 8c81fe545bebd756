"""`sweeper validate` on the example sweeps and on every file in tests/sweeper/malformed/.

Each malformed file states what the output must contain on its first line:
``# expect: PART ... PART`` -- every PART must appear in stderr (``...`` separates parts).
"""
from pathlib import Path

import pytest

from sweeper.app.cli import main

REPO = Path(__file__).resolve().parents[2]
MALFORMED = sorted((REPO / "tests" / "sweeper" / "malformed").glob("*.yaml"))
EXAMPLES = sorted((REPO / "sweeps").glob("*.yaml"))


def expectations(path: Path) -> list[str]:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: ...'"
    return [part.strip() for part in first[len("# expect: "):].split(" ... ") if part.strip()]


def test_there_are_enough_malformed_files():
    assert len(MALFORMED) >= 12


@pytest.mark.parametrize("path", MALFORMED, ids=[p.stem for p in MALFORMED])
def test_malformed_file_is_rejected_with_location(path, capsys):
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    for part in expectations(path):
        assert part in err, f"expected {part!r} in:\n{err}"
    # One line per problem, each naming the file.
    assert all(line.startswith(f"{path}: ") for line in err.splitlines())


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_sweeps_validate(path, capsys):
    assert main(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{path}: OK (")
    assert err == ""


def test_examples_exist():
    assert {p.name for p in EXAMPLES} >= {"quickstart.yaml", "lecture-grid.yaml", "random-asha.yaml"}


def test_quickstart_counts(capsys):
    path = REPO / "sweeps" / "quickstart.yaml"
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"{path}: OK (6 points, 6 trials)"


def test_missing_file(tmp_path, capsys):
    path = tmp_path / "nope.yaml"
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"{path}: file not found"


def test_all_problems_reported_at_once(capsys):
    path = REPO / "tests" / "sweeper" / "malformed" / "several-problems.yaml"
    assert main(["validate", str(path)]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 4


def test_plan_prints_summary(capsys, monkeypatch):
    import sweeper.plan.points

    monkeypatch.setattr(sweeper.plan.points, "measure_flops_per_cpu", lambda: 1e10)
    assert main(["plan", str(REPO / "sweeps" / "quickstart.yaml"), "--cpus", "2"]) == 0
    out = capsys.readouterr().out
    assert "kernel_size (2) x pooling (3) = 6 points" in out
    assert "6 trials: 0 done, 6 pending" in out
    assert "Estimated cost" in out


def test_plan_of_invalid_file(capsys):
    assert main(["plan", str(REPO / "tests" / "sweeper" / "malformed" / "bad-pooling.yaml")]) == 2
    out, err = capsys.readouterr()
    assert "model.pooling" in err and "Traceback" not in out + err


def test_bad_command_line_returns_2(capsys):
    assert main(["frobnicate"]) == 2
    assert main([]) == 2
    capsys.readouterr()
