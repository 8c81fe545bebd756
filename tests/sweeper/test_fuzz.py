"""Fuzzing the CLI with mutated sweep files: every case ends in exit 0 or 2 with a message.

At least 1,000 cases run in-process through :func:`sweeper.app.cli.main` (``validate``, and
``plan`` with ``--tracking-uri`` inside a temporary folder), each within 2 s and 500 MB; a few
dozen more run as real ``python -m sweeper`` processes. The mutations (``fuzzing.py``) start from
the example files in ``sweeps/`` and change the tree, the YAML and the bytes. The count, the
slowest case and its peak memory are printed with the measured figures at the end of the run.
"""
import contextlib
import io
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from random import Random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sweeper.app.cli import main
from tests.sweeper.fuzzing import CONTROL, EXAMPLES, FIELDS, SCALARS, Emitter, laughs, mutant, random_value

REPO = Path(__file__).resolve().parents[2]
CASES = 1000
MAX_SECONDS, MAX_BYTES = 2.0, 500e6
STATS = {"count": 0, "codes": {}, "slowest": (0.0, None), "rss_before": 0, "subprocess": None}


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder to run in, so that nothing is written elsewhere; the imports warmed up first."""
    folder = tmp_path_factory.mktemp("fuzz")
    old = os.getcwd()
    os.chdir(folder)
    try:
        for name in EXAMPLES:  # imports (MLflow for plan) and the FLOP rate measured once
            run_case(folder, EXAMPLES[name].encode(), "plan")
        STATS["rss_before"] = _maxrss()
        yield folder
    finally:
        os.chdir(old)


def argv_for(folder: Path, path: Path, command: str) -> list[str]:
    if command == "plan":
        return ["plan", str(path), "--tracking-uri", f"sqlite:///{folder}/store/mlflow.db", "--cpus", "2"]
    return ["validate", str(path)]


def run_case(folder: Path, data: bytes, command: str):
    """``(exit code, stdout, stderr, seconds)`` of the CLI on a file holding ``data``."""
    path = folder / "case.yaml"
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    start, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv_for(folder, path, command))
    return code, out.getvalue(), err.getvalue(), (time.perf_counter() - start, time.process_time() - cpu)


def check_outcome(code: int, out: str, err: str, path: str, data: bytes) -> None:
    shown = data[:400]
    assert code in (0, 2), f"exit {code} for {shown!r}:\n{err}"
    assert "Traceback" not in out + err, f"traceback for {shown!r}:\n{err}"
    if code == 2:
        lines = err.strip().splitlines()
        assert lines, f"exit 2 without a message for {shown!r}"
        assert all(line.startswith((f"{path}: ", "sweeper ")) for line in lines), err
    else:
        assert out.strip() and not err.strip(), (out, err)


@settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(rng=st.randoms(use_true_random=False), example=st.sampled_from(sorted(EXAMPLES)),
       command=st.sampled_from(["validate", "plan"]))
def test_fuzz_cli_in_process(workdir, rng, example, command):
    data = mutant(rng, EXAMPLES[example])
    code, out, err, (seconds, cpu) = run_case(workdir, data, command)
    check_outcome(code, out, err, str(workdir / "case.yaml"), data)
    assert sorted(p.name for p in workdir.iterdir()) == ["case.yaml"], "the CLI wrote a file"
    STATS["count"] += 1
    STATS["codes"][code] = STATS["codes"].get(code, 0) + 1
    if cpu > STATS["slowest"][0]:
        STATS["slowest"] = (cpu, (data, command))
    STATS["wall"] = max(STATS.get("wall", 0.0), seconds)
    # CPU time: the wall time of a case on a shared 2-core machine says more about the neighbours.
    assert cpu < MAX_SECONDS, f"{cpu:.2f} s of CPU for {data[:400]!r}"


SECTIONS = ["", "model.", "train.", "data.", "grid.", "mlflow.", "resources.", "early_stopping.", "exclude.",
            "name.", "model.dense.", "..", "."]


def set_item(rng) -> str:
    """One ``--set KEY=VALUE`` as a user or an attacker might type it."""
    key = rng.choice(SECTIONS) + rng.choice(FIELDS + ["", "=", "x" * 300, "\u00e9", "a b", "<<", "0"])
    if rng.random() < 0.3:
        value = rng.choice(SCALARS + CONTROL + ["[1, 2", "{a: 1", "&a [*a]", laughs(rng), "[" * 50 + "]" * 50,
                                                 "!!python/object/apply:os.getcwd []", "", "=", "a=b"])
    else:
        value = Emitter(rng, rate=rng.choice([0.0, 0.3])).emit(random_value(rng))
    return f"{key}={value}" if rng.random() < 0.95 else key


@settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(rng=st.randoms(use_true_random=False), example=st.sampled_from(sorted(EXAMPLES)),
       command=st.sampled_from(["validate", "plan"]))
def test_fuzz_set_values(workdir, rng, example, command):
    """``--set`` assignments, parsed under the sweep file's bounds, on a valid example file."""
    path = workdir / "case.yaml"
    path.write_text(EXAMPLES[example], encoding="utf-8")
    items = [set_item(rng) for _ in range(rng.randrange(1, 4))]
    argv = argv_for(workdir, path, command) + [a for item in items for a in ("--set", item)]
    out, err = io.StringIO(), io.StringIO()
    cpu = time.process_time()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    cpu = time.process_time() - cpu
    check_outcome(code, out.getvalue(), err.getvalue(), str(path), repr(items).encode())
    assert sorted(p.name for p in workdir.iterdir()) == ["case.yaml"], "the CLI wrote a file"
    STATS["set_count"] = STATS.get("set_count", 0) + 1
    STATS["set_slowest"] = max(STATS.get("set_slowest", 0.0), cpu)
    assert cpu < MAX_SECONDS, (cpu, items)


def test_fuzz_figures(workdir, record_figure):
    """The count and the slowest case, with its peak memory (traced, run again) and the process's."""
    assert STATS["count"] >= CASES
    seconds, (data, command) = STATS["slowest"]
    tracemalloc.start()
    try:
        run_case(workdir, data, command)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    growth = _maxrss() - STATS["rss_before"]
    assert peak < MAX_BYTES and growth < MAX_BYTES
    record_figure(f"sweep-file fuzz: {STATS['count']} cases in-process (exit codes {dict(sorted(STATS['codes'].items()))}); "
                  f"slowest {seconds:.2f} s of CPU ({command}; slowest wall time of any case {STATS['wall']:.2f} s), "
                  f"its peak traced memory {peak / 1e6:.1f} MB; "
                  f"process peak RSS {_maxrss() / 1e6:.0f} MB, {growth / 1e6:.0f} MB above the warmed-up start")
    if STATS.get("set_count"):
        record_figure(f"--set fuzz: {STATS['set_count']} cases in-process, slowest {STATS['set_slowest']:.2f} s of CPU")


@pytest.mark.slow
def test_fuzz_cli_in_subprocesses(tmp_path, record_figure):
    """A few dozen cases through ``python -m sweeper``, four at a time, as a user would run them."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}

    def one(i: int):
        rng = Random(i)
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        data = mutant(rng, EXAMPLES[rng.choice(sorted(EXAMPLES))])
        path = folder / "case.yaml"
        path.write_bytes(data)
        command = ["validate", "plan"][i % 2]
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "sweeper", *argv_for(folder, path, command)], cwd=folder,
                              env=env, capture_output=True, text=True, timeout=120)
        check_outcome(proc.returncode, proc.stdout, proc.stderr, str(path), data)
        assert sorted(p.name for p in folder.iterdir()) == ["case.yaml"]
        return time.perf_counter() - start

    with ThreadPoolExecutor(4) as pool:
        seconds = list(pool.map(one, range(36)))
    record_figure(f"sweep-file fuzz: {len(seconds)} cases as subprocesses, slowest {max(seconds):.1f} s "
                  f"(interpreter start included)")
