"""Which convolution algorithm runs a layer: measured once per machine, thread count and shape.

At the first forward (and the first backward) of a layer shape the candidate algorithms of
:data:`cnn.conv.ALGORITHMS` that support it run on the layer's own input, in turn, and the
fastest is kept. Every candidate computes the same function (the parity tests hold each to
PyTorch's result within float32 1e-4 / float64 1e-10), so the choice changes rounding, never the
result beyond that; once cached, the same machine makes the same choice, run after run.

Cost: candidates the layer's cost model rules out (``cnn.conv.PLAUSIBLE``) never run. The others
run on the first :data:`SUB_BATCH` images of the batch (costs scale with the batch); only those
within :data:`CLOSE` times the best go on to the whole batch. Each round runs every candidate
once (its first run, allocations included), then those within :data:`PRUNE` times the best
:data:`REPS` more times, in alternating order; each one's minimum counts. Per layer shape and
phase that is about two runs of the winner and one or two of each close loser, once per machine;
:func:`spent` says how many seconds a process has spent (the benchmarks report it).

The cache is a JSON file: ``$CNN_AUTOTUNE_CACHE`` if set (``off`` keeps choices in memory only),
else ``$XDG_CACHE_HOME/cnn-sweeper/autotune.json`` (``~/.cache/...``). Entries are grouped by a
fingerprint of the machine (CPU model and flags, NumPy, SciPy and BLAS builds), so one cache
can be shared by different machines. Keys: phase (``forward``/``backward``), the layer's
:class:`~cnn.convbase.ConvShape` with its batch rounded up to a power of two, and the thread
count. ``CNN_CONV_ALGO`` (``im2col``, ``shift``, ``fft``, ``dft``, ``winograd`` or ``FORWARD/BACKWARD``) forces
a choice where the algorithm supports the shape.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import time
from pathlib import Path

CACHE_ENV, FORCE_ENV, SPLIT_ENV = "CNN_AUTOTUNE_CACHE", "CNN_CONV_ALGO", "CNN_BATCH_SPLIT"
#: Timed runs per surviving candidate, after its first run.
REPS = 1
#: A candidate whose first run takes more than PRUNE x the best first run is not timed further.
PRUNE = 2.0
#: Images of the first, cheap round of measurements; candidates within CLOSE x its best go on.
SUB_BATCH, CLOSE = 16, 1.5
FORMAT = 1

_memory: dict[str, dict] = {}
_state = {"spent": 0.0, "loaded_from": None, "fingerprint": None}


def spent() -> float:
    """Seconds this process has spent measuring candidates."""
    return _state["spent"]


def cache_path() -> Path | None:
    """The cache file, or None when ``CNN_AUTOTUNE_CACHE=off``."""
    value = os.environ.get(CACHE_ENV, "")
    if value.lower() in ("off", "none", "0"):
        return None
    if value:
        return Path(value).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "cnn-sweeper" / "autotune.json"


def machine() -> dict:
    """What a measured speed depends on besides the shape: CPU model and flags, library builds."""
    import numpy as np
    import scipy
    from threadpoolctl import threadpool_info

    info = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                name, _, value = line.partition(":")
                info.setdefault(name.strip(), value.strip())
                if "model name" in info and "flags" in info:
                    break
    except OSError:
        pass
    cpu, flags = info.get("model name") or platform.processor() or "unknown", info.get("flags", "")
    blas = sorted(f"{lib.get('internal_api')} {lib.get('version')} {lib.get('architecture')}"
                  for lib in threadpool_info() if lib.get("user_api") == "blas")
    return {"cpu": cpu, "flags": flags, "numpy": np.__version__, "scipy": scipy.__version__, "blas": blas,
            "machine": platform.machine()}


def fingerprint() -> str:
    if _state["fingerprint"] is None:
        text = json.dumps(machine(), sort_keys=True)
        _state["fingerprint"] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return _state["fingerprint"]


def batch_bucket(n: int) -> int:
    """Batches up to the next power of two share a choice (an epoch's last, smaller batch too)."""
    return 1 << max(0, int(n) - 1).bit_length()


def key(phase: str, shape, threads: int) -> str:
    from dataclasses import replace

    return f"{phase}|{replace(shape, n=batch_bucket(shape.n)).key()}|t{threads}"


def forced_split() -> bool | None:
    """``CNN_BATCH_SPLIT``: ``always`` (True) or ``never`` (False) split a convolution's batch
    over the kernel threads; unset or ``auto`` (None): measured per shape."""
    value = os.environ.get(SPLIT_ENV, "").strip().lower()
    return {"always": True, "never": False}.get(value)


def forced(phase: str) -> str | None:
    """The algorithm ``CNN_CONV_ALGO`` names for ``phase`` (``forward``/``backward``), if any."""
    value = os.environ.get(FORCE_ENV, "").strip()
    if not value or value == "auto":
        return None
    fwd, _, bwd = value.partition("/")
    if phase == "forward":
        return "im2col" if fwd == "shift" else fwd  # shift's forward is im2col's
    return bwd or fwd


def _load() -> dict:
    path = cache_path()
    if path is None or _state["loaded_from"] == str(path):
        return _memory
    _state["loaded_from"] = str(path)
    try:
        data = json.loads(path.read_text())
        entries = data.get("machines", {}).get(fingerprint(), {}).get("choices", {})
        if data.get("format") == FORMAT and isinstance(entries, dict):
            for k, v in entries.items():
                _memory.setdefault(k, v)
    except (OSError, ValueError, AttributeError):
        pass  # no cache yet, or unreadable: measure again
    return _memory


def _save(k: str, entry: dict) -> None:
    """Merge one entry into the file: re-read under a lock, replace atomically (workers share it)."""
    path = cache_path()
    if path is None:
        return
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = json.loads(path.read_text())
                if data.get("format") != FORMAT:
                    raise ValueError("other format")
            except (OSError, ValueError):
                data = {"format": FORMAT, "machines": {}}
            mine = data["machines"].setdefault(fingerprint(), {"machine": machine(), "choices": {}})
            mine["choices"][k] = entry
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, path)
    except OSError:
        pass  # a read-only or full disk: the choice stays in memory for this process


def lookup(phase: str, shape, threads: int) -> str | None:
    entry = _load().get(key(phase, shape, threads))
    return entry.get("choice") if isinstance(entry, dict) else None


def measure(candidates: dict, threads: int = 1, reps: int = REPS, typical: bool = False) -> tuple[str, dict]:
    """Run each ``name -> fn`` (see the module doc); ``(fastest name, {name: best seconds})``.

    With one thread every kernel runs in the calling thread, and its CPU time is the measure:
    other processes on the machine lengthen the wall time of a run, not its CPU time. With more
    threads the wall time is what a step waits for; the minimum over runs keeps the least
    disturbed one. ``typical``: the median of the runs instead (every candidate runs ``reps``
    more times), for choices where a lucky run misleads: threads that meet wait for a busy core
    as often as the machine is busy, not only in the worst run.
    """
    clock = time.thread_time if threads == 1 else time.perf_counter
    t0 = time.perf_counter()
    runs: dict[str, list] = {}
    for name, fn in candidates.items():
        t = clock()
        fn()
        runs[name] = [clock() - t]
    times = {n: r[0] for n, r in runs.items()}
    alive = list(candidates) if typical else [n for n in candidates if times[n] <= PRUNE * min(times.values())]
    for rep in range(reps if len(alive) > 1 else 0):
        for name in (alive if rep % 2 == 0 else alive[::-1]):
            t = clock()
            candidates[name]()
            runs[name].append(clock() - t)
    for name in alive:
        r = sorted(runs[name][1:] if typical and len(runs[name]) > 1 else runs[name])
        times[name] = r[len(r) // 2] if typical else r[0]
    _state["spent"] += time.perf_counter() - t0
    return min(alive, key=lambda n: times[n]), times


def choose(phase: str, shape, threads: int, names: list, trials, reps: int = REPS, typical: bool = False) -> str:
    """The algorithm for ``phase`` of ``shape``: cached, or measured now.

    ``trials(names, n)`` returns ``name -> callable`` running each candidate on the first ``n``
    images. Candidates are first measured on :data:`SUB_BATCH` images (cheap: a slow candidate
    costs a fraction of a step); those within :data:`CLOSE` of the best are measured again on
    the whole batch, where the choice is made. ``reps``, ``typical``: see :func:`measure`.
    """
    if len(names) == 1:
        return names[0]
    cached = lookup(phase, shape, threads)
    if cached in names:
        return cached
    t0 = time.perf_counter()
    first = {}
    if shape.n > 2 * SUB_BATCH:
        _, first = measure(trials(names, SUB_BATCH), threads, reps, typical)
        names = [n for n in names if first[n] <= CLOSE * min(first.values())]
    choice, times = measure(trials(names, shape.n), threads, reps, typical) if len(names) > 1 else (names[0], {})
    entry = {"choice": choice, "ms": {n: round(1e3 * t, 4) for n, t in times.items()},
             f"ms_at_{SUB_BATCH}": {n: round(1e3 * t, 4) for n, t in first.items()},
             "tuned_s": round(time.perf_counter() - t0, 4),
             "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    k = key(phase, shape, threads)
    _memory[k] = entry
    _save(k, entry)
    return choice


def forget() -> None:
    """Drop the choices held in memory; the next lookup reads the cache file again."""
    _memory.clear()
    _state["loaded_from"] = None


def choices() -> dict:
    """Every choice known to this process (loaded or measured): key -> entry."""
    return dict(_load())
