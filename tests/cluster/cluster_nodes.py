"""The cluster's nodes and Ray workers as the process table shows them (tests/cluster/test_cluster.py).

A Ray worker process is titled ``ray::<task name>`` and is a child of its node's raylet, whose
command line carries ``--node_id``; this works because the whole cluster runs on this machine.
"""
from __future__ import annotations

import os
import re
import signal
from pathlib import Path


def _read(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ppid_and_state(pid: int) -> tuple[int, str]:
    stat = _read(Path(f"/proc/{pid}/stat"))
    fields = stat.rsplit(")", 1)[-1].split()
    return (int(fields[1]), fields[0]) if len(fields) > 1 else (0, "?")


def raylets(port: int) -> dict[int, dict]:
    """Live raylets of the cluster whose GCS listens on ``port``: pid -> node id, head or not."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        cmd = _read(proc / "cmdline")
        if "/raylet " not in cmd.split(" --", 1)[0] + " " or not re.search(rf"--gcs-address=\S+:{port}\b", cmd):
            continue
        if _ppid_and_state(int(proc.name))[1] == "Z":
            continue
        node = re.search(r"--node_id=([0-9a-f]+)", cmd)
        found[int(proc.name)] = {"node_id": node.group(1) if node else "?", "head": " --head " in cmd + " "}
    return found


def ray_processes(port: int, titles: set[str]) -> set[tuple[int, str, str]]:
    """Ray workers running a task or actor titled ``ray::<title>`` now: (pid, title, node id)."""
    nodes = raylets(port)
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        title = _read(proc / "cmdline").strip()
        if not title.startswith("ray::") or title[len("ray::"):] not in titles:
            continue
        ppid, state = _ppid_and_state(int(proc.name))
        if state != "Z" and ppid in nodes:
            found.add((int(proc.name), title[len("ray::"):], nodes[ppid]["node_id"]))
    return found


def kill_node(raylet_pid: int) -> None:
    """SIGKILL a node's raylet and every process under it at once, as if its machine died.

    Killing the raylet alone is not enough: a worker process already running a trial outlives
    its raylet, finishes the trial and returns the result to the driver directly.
    """
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            children.setdefault(_ppid_and_state(int(proc.name))[0], []).append(int(proc.name))
    doomed, todo = [], [raylet_pid]
    while todo:
        pid = todo.pop()
        doomed.append(pid)
        todo += children.get(pid, [])
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
