"""The docker-compose cluster driven from the host, for tests/cluster/test_compose_live.py: the
compose CLI (``docker-compose`` with the project, env file and compose file that .ci/compose.sh
describes in the environment), the one-shot sweeper service, and a headless browser logged in to
the MLflow server. The sweep's record is read with tests/cluster/records.py.
"""
from __future__ import annotations

import http.client
import http.server
import os
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.cluster.records import client, sweep_text

REPO = Path(__file__).resolve().parents[2]
SWEEP_TIMEOUT = 300  # seconds for one sweep through the sweeper service
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# -- the compose CLI ---------------------------------------------------------------------------------

def compose_args(*args: str) -> list[str]:
    return ["docker-compose", "--env-file", os.environ["COMPOSE_ENV_FILE"], "-p", os.environ["COMPOSE_PROJECT"],
            "-f", os.environ["COMPOSE_FILE_PATH"], *args]


def compose(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    # COLUMNS: docker-compose 1.29 wraps its `ps` table at the terminal's width.
    out = subprocess.run(compose_args(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO,
                         stdin=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "300"})
    if check:
        assert out.returncode == 0, f"docker-compose {' '.join(args)} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def settings() -> dict:
    values = {}
    for line in Path(os.environ["COMPOSE_ENV_FILE"]).read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def worker_hosts() -> dict[int, str]:
    """Replica index -> host name of each running ray-worker container."""
    ids = compose("ps", "-q", "ray-worker").stdout.split()
    hosts = {}
    for index in range(1, len(ids) + 1):
        out = compose("exec", "-T", "--index", str(index), "ray-worker", "hostname", check=False)
        if out.returncode == 0:
            hosts[index] = out.stdout.strip()
    return hosts


def alive_nodes() -> list[dict]:
    code = ("import json, ray; ray.init(logging_level='ERROR', log_to_driver=False); "
            "print('NODES=' + json.dumps([{'ip': n['NodeManagerAddress'], 'cpus': n['Resources'].get('CPU', 0)} "
            "for n in ray.nodes() if n['Alive']]))")
    out = compose("exec", "-T", "ray-head", "python", "-c", code, timeout=120)
    line = next(line for line in out.stdout.splitlines() if line.startswith("NODES="))
    import json
    return json.loads(line[len("NODES="):])


def wait_for_workers(count: int, timeout: float = 300) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        nodes = alive_nodes()
        if sum(n["cpus"] > 0 for n in nodes) >= count:
            return nodes
        assert time.monotonic() < deadline, f"expected {count} worker nodes with CPUs, got {nodes}"
        time.sleep(3)


# -- sweeps through the sweeper service ----------------------------------------------------------------

def sweep_folder(name: str, epochs: int, train_size: int) -> Path:
    """A sweep file in a folder the sweeper container mounts (readable by its uid 1000)."""
    folder = Path(tempfile.mkdtemp(prefix="compose-sweep-"))
    folder.chmod(0o755)
    path = folder / f"{name}.yaml"
    path.write_text(sweep_text(name, epochs, train_size))
    path.chmod(0o644)
    return path


def start_sweeper(path: Path | None = None) -> subprocess.Popen:
    """The one-shot sweeper service, in the background; its output in a file."""
    args = ["--profile", "run", "run", "--rm", "-T"]
    if path is not None:
        args += ["-v", f"{path.parent}:/sweeps-test:ro", "sweeper", "docker/join-ray.sh", "sweeper", "run",
                 f"/sweeps-test/{path.name}", "--address", "ray-head:6379", "-q"]
    else:
        args += ["sweeper"]
    log = Path(tempfile.mkstemp(prefix="compose-sweeper-", suffix=".log")[1])
    with open(log, "w") as out:
        proc = subprocess.Popen(compose_args(*args), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    proc.log = log
    return proc


def start_submission(path: Path, url: str, token: str | None, credentials: dict) -> subprocess.Popen:
    """``sweeper run PATH --cluster URL`` on the host, in the background (the Job Submission API;
    the driver runs in the ray-head container); ``token`` in RAY_AUTH_TOKEN, MLflow's login from
    ``credentials`` (passed on to the job); its output in a file."""
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env.update(credentials)
    env["PYTHONPATH"] = str(REPO)  # this checkout's sweeper, whatever the venv has installed
    if token is not None:
        env["RAY_AUTH_TOKEN"] = token
    log = Path(tempfile.mkstemp(prefix="compose-submit-", suffix=".log")[1])
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sweeper", "run", str(path), "--cluster", url, "-q"],
                                cwd=path.parent, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env)
    proc.log = log
    return proc


def finish(proc: subprocess.Popen, timeout: float = SWEEP_TIMEOUT) -> tuple[int, str]:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"the sweeper service did not finish in {timeout}s:\n{proc.log.read_text()[-4000:]}")
    return proc.returncode, proc.log.read_text()


@contextmanager
def killed_on_exit(proc: subprocess.Popen):
    """Whatever happens in the block, the sweeper service does not outlive it."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()


def wait_for_checkpoint(cluster: dict, name: str, proc: subprocess.Popen, hosts: set[str] | None = None,
                        timeout: float = 240) -> list:
    """Poll until a RUNNING trial (on one of ``hosts``, if given) has saved an epoch checkpoint."""
    c = client(cluster["uri"])
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        experiment = c.get_experiment_by_name(name)
        if experiment is not None:
            runs = c.search_runs([experiment.experiment_id], "tags.`sweep.kind` = 'trial' and attributes.status = 'RUNNING'")
            ready = [r for r in runs if int(r.data.tags.get("sweep.checkpoint_epoch", 0) or 0) >= 1
                     and (hosts is None or r.data.tags.get("sweep.host") in hosts)]
            if ready:
                return ready
        time.sleep(0.5)
    rc, out = finish(proc, timeout=5) if proc.poll() is not None else (None, "")
    pytest.fail(f"no trial checkpointed mid-sweep (sweeper exit {rc}):\n{out[-3000:]}")


# -- a browser, logged in --------------------------------------------------------------------------------

def chromium(tmp_path: Path, action: str, url: str) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1800,1000", "--virtual-time-budget=20000",
           action, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout


class login_proxy:
    """An HTTP proxy on 127.0.0.1 that forwards to the MLflow server with the Authorization header."""

    def __init__(self, cluster: dict):
        import base64

        token = base64.b64encode(f"{cluster['user']}:{cluster['password']}".encode()).decode()
        target = ("127.0.0.1", cluster["port"])

        class Handler(http.server.BaseHTTPRequestHandler):
            def forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization")}
                headers.update({"Host": f"{target[0]}:{target[1]}", "Authorization": f"Basic {token}"})
                upstream = http.client.HTTPConnection(*target, timeout=60)
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
