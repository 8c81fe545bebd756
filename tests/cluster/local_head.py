"""A Ray head of the test's own, as plain processes, with its dashboard (the Job Submission API) on
127.0.0.1 and token authentication: for tests/cluster/test_submit.py.

``ray start --head --block`` runs in a process session of its own, with its own ``--temp-dir``,
``HOME`` and ports (other Ray clusters run on this machine); it is stopped by killing that session
and whatever process still names the temp dir: never ``ray stop``.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _pids_naming(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


@contextmanager
def local_head(cpus: int = 2, token: str = "test-token-0123456789abcdef", extra_env: dict | None = None,
               ready_timeout: float = 180):
    """Yield ``{"url", "address", "token", "tracking_uri", "temp"}`` of a running head; stop it after."""
    temp = Path(tempfile.mkdtemp(prefix="rch-", dir="/tmp"))
    home = temp / "home"
    home.mkdir()
    store = temp / "store"
    store.mkdir()
    gcs, dash, agent, agent_grpc, metrics, rt_agent, nm, om, client = free_ports(9)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0", "HOME": str(home),
                "PATH": f"{BIN}:{env.get('PATH', '')}", "PYTHONPATH": str(REPO),
                "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db",
                # Other agents' processes fill this machine's memory: Ray's OOM killer would kill our
                # job's supervisor for memory that is not ours (seen: a 19 GB test elsewhere).
                "RAY_memory_monitor_refresh_ms": "0", **(extra_env or {})})
    command = [str(BIN / "ray"), "start", "--head", "--block", f"--temp-dir={temp / 'ray'}", f"--port={gcs}",
               "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
               f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
               f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={rt_agent}",
               f"--node-manager-port={nm}", f"--object-manager-port={om}", f"--ray-client-server-port={client}",
               f"--num-cpus={cpus}", "--object-store-memory=100000000", "--disable-usage-stats"]
    log = open(temp / "ray-start.log", "w")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            cwd=temp)
    url = f"http://127.0.0.1:{dash}"
    info = {"url": url, "address": f"127.0.0.1:{gcs}", "token": token, "tracking_uri": env["MLFLOW_TRACKING_URI"],
            "temp": temp, "env": env, "pid": proc.pid}
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited {proc.returncode}: {(temp / 'ray-start.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/gcs_healthz", timeout=3) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard at {url} did not answer in {ready_timeout}s")
            time.sleep(1)
        yield info
    finally:
        stop_head(proc, temp)
        log.close()


def stop_head(proc: subprocess.Popen, temp: Path) -> None:
    """SIGTERM to the head's session (``ray start --block`` then stops its processes), SIGKILL to what is left."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    for pid in _pids_naming(str(temp)):  # daemons that left the session (dashboard agents)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
