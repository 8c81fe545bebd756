"""The issue's hostile data files given to ``sweeper validate`` in a child process: each exits 2 with
one line naming the file and the limit, no traceback, within a time and peak-RSS bound (os.wait4).

The small cases run by default; the full-size ones (a 2 GB zip bomb, a real 20000x20000 PNG, a
3 GB gzip bomb) are ``slow``. ``python -m tests.sweeper.test_hostile_data_cli`` prints the table
of docs/faults.md (exit code, seconds, peak RSS of each case).
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.cnn import hostile

REPO = Path(__file__).resolve().parents[2]


def sweep_file(folder: Path, source: str, path: Path) -> Path:
    text = (f"name: hostile\ndata:\n  source: {source}\n  path: {path}\n"
            + ("  resize: [8, 8]\n" if source == "folder" else "")
            + "model:\n  blocks: 1\n  dense: []\ntrain:\n  epochs: 1\n")
    out = folder / f"hostile-{source}.yaml"
    out.write_text(text)
    return out


#: ``python -m sweeper`` that writes its own peak RSS (VmHWM, kB) to $HOSTILE_RSS_OUT at exit:
#: getrusage's ru_maxrss keeps the forking parent's peak across exec, VmHWM is the child's own.
_WRAP = ("import atexit, os, runpy, sys\n"
         "def _rss():\n"
         "    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
         "    open(os.environ['HOSTILE_RSS_OUT'], 'w').write(line.split()[1])\n"
         "atexit.register(_rss)\n"
         "sys.argv = ['sweeper', *sys.argv[1:]]\n"
         "runpy.run_module('sweeper', run_name='__main__', alter_sys=True)\n")


def run_cli(args, cwd, env_extra=None, timeout=120):
    """``(exit code, seconds, peak RSS in MB, stderr)`` of ``python -m sweeper ARGS``."""
    rss_out = Path(cwd) / ".rss"
    env = dict(os.environ, PYTHONPATH=str(REPO), HOSTILE_RSS_OUT=str(rss_out), **(env_extra or {}))
    env.pop("SWEEPER_DEBUG", None)
    start = time.perf_counter()
    try:
        run = subprocess.run([sys.executable, "-c", _WRAP, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"sweeper {' '.join(args)} still running after {timeout} s") from None
    seconds = time.perf_counter() - start
    rss = int(rss_out.read_text()) / 1024 if rss_out.exists() else float("nan")
    return run.returncode, seconds, rss, run.stderr


CASES = {  # name: (source, maker, slow)
    "FIFO as the npz path": ("npz", lambda d: hostile.fifo(d, "data.npz"), False),
    "npz header declaring 10^6x1000x1000 images": ("npz", hostile.npz_huge_header, False),
    "zip-bomb npz, 64 MiB of zeros": ("npz", lambda d: hostile.npz_zip_bomb(d, 64 << 20), False),
    "image folder with a 20000x20000 PNG header (one row)": ("folder", lambda d: hostile.image_folder_with(d, rows=1),
                                                            False),
    "CIFAR folder whose test_batch.bin is a FIFO": ("cifar10", hostile.cifar_with_fifo, False),
    "zip-bomb npz, 2 GB of zeros": ("npz", hostile.npz_zip_bomb, True),
    "image folder with a full 20000x20000 PNG": ("folder", hostile.image_folder_with, True),
    "IDX gzip bomb, 3 GB of zeros": ("idx", hostile.idx_gzip_bomb, True),
}


def measure(name, folder: Path):
    source, make, _ = CASES[name]
    path = make(folder)
    return (path,) + run_cli(["validate", str(sweep_file(folder, source, path))], folder)


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if c[2] else []) for n, c in CASES.items()])
def test_hostile_data_exits_2(name, tmp_path, record_figure):
    path, code, seconds, rss, err = measure(name, tmp_path)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("sweeper validate: bad data: ") and str(path) in lines[0], lines[0]
    assert seconds < 30 and rss < 600, (seconds, rss)
    record_figure(f"validate, {name}: exit {code} in {seconds:.1f} s, peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    print("| case | exit | seconds | peak RSS (MB) | message |\n|---|---|---|---|---|")
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            p, c, s, r, e = measure(case, Path(tmp))
            print(f"| {case} | {c} | {s:.1f} | {r:.0f} | {e.strip().splitlines()[-1].replace(str(p), 'PATH')[:160]} |")
