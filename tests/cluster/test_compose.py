"""docker-compose.yml, read as YAML (no Docker engine needed): the cluster's topology holds together.

Compose's variable interpolation (``${VAR:-default}``, ``${VAR:?error}``, ``$$``) is applied here
the way ``docker compose config`` does, with the defaults alone plus the two required secrets, and
again with ``.env.example``: both must give the same cluster. Where the ``docker`` client has the
compose plugin, ``docker compose config`` itself checks the file too (it parses; no engine needed).
Also checked without a cluster: ``scripts/cluster.sh`` (the same topology as plain processes)
parses, and its ``env`` command prints what a driver needs.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
SECRETS = {"POSTGRES_PASSWORD": "test-password", "RAY_AUTH_TOKEN": "test-token",
           "MLFLOW_TRACKING_PASSWORD": "test-mlflow-password"}
MLFLOW_SERVER = REPO / "docker" / "mlflow-server.sh"
SERVICES = {"postgres", "mlflow", "ray-head", "ray-worker", "sweeper"}
RAY_SERVICES = ("ray-head", "ray-worker", "sweeper")
APP_SERVICES = ("mlflow", "ray-head", "ray-worker", "sweeper")

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


class MissingVariable(ValueError):
    pass


def interpolate(value, env: dict):
    """Compose's interpolation of every string in ``value`` (recursively), with ``env``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        present = name in env
        nonempty = bool(env.get(name))
        if op in (":-", "-"):
            return env[name] if (nonempty if op == ":-" else present) else arg
        if op in (":?", "?"):
            if not (nonempty if op == ":?" else present):
                raise MissingVariable(f"{name}: {arg}")
            return env[name]
        if op in (":+", "+"):
            return arg if (nonempty if op == ":+" else present) else ""
        return env.get(name, "")

    return _VARIABLE.sub(substitute, value)


def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def env_example() -> dict:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def compose() -> dict:
    return interpolate(raw(), dict(SECRETS))


def tokens(service: dict) -> list[str]:
    command = service["command"]
    return command.split() if isinstance(command, str) else [str(t) for t in command]


def flag(args: list[str], name: str):
    """The value of ``--name value`` or ``--name=value``; True for a bare flag; None if absent."""
    for i, arg in enumerate(args):
        if arg == name:
            following = args[i + 1] if i + 1 < len(args) else None
            return True if following is None or following.startswith("--") else following
        if arg.startswith(name + "="):
            return arg[len(name) + 1:]
    return None


def environment(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: None if v is None else str(v) for k, v in env.items()}


def depends(service: dict) -> dict:
    deps = service.get("depends_on") or {}
    return {name: {"condition": "service_started"} for name in deps} if isinstance(deps, list) else deps


def healthcheck_text(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(map(str, test))


# -- interpolation ---------------------------------------------------------------------------------

def test_interpolation_helper():
    env = {"A": "1", "E": ""}
    assert interpolate("${A:-2} ${B:-2} ${E:-2} ${E-2} $$A ${A}", env) == "1 2 2  $A 1"
    with pytest.raises(MissingVariable):
        interpolate("${B:?needed}", env)


def test_secrets_are_required_and_nothing_else():
    with pytest.raises(MissingVariable, match="|".join(SECRETS)):
        interpolate(raw(), {})
    for missing in SECRETS:
        with pytest.raises(MissingVariable, match=missing):
            interpolate(raw(), {k: v for k, v in SECRETS.items() if k != missing})


def test_env_example_names_every_variable_with_the_compose_defaults(compose):
    text = COMPOSE.read_text()
    used = {m.group("name") or m.group("bare") for m in _VARIABLE.finditer(text) if m.group(0) != "$$"}
    example = env_example()
    missing = used - set(example)
    assert not missing, f".env.example lacks {sorted(missing)}"
    assert set(SECRETS) <= set(example) and all(example[k] == "" for k in SECRETS), "secrets must be left blank"
    # Filled in, .env.example gives exactly the cluster the defaults give.
    assert interpolate(raw(), {**example, **SECRETS}) == compose


# -- topology --------------------------------------------------------------------------------------

def test_services(compose):
    assert SERVICES <= set(compose["services"])
    assert compose["services"]["postgres"]["image"].split(":") == ["postgres", "16"]
    images = {compose["services"][s]["image"] for s in APP_SERVICES}
    assert len(images) == 1, images
    for name in APP_SERVICES:
        build = compose["services"][name]["build"]
        assert (REPO / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_postgres(compose):
    pg = compose["services"]["postgres"]
    env = environment(pg)
    assert env["POSTGRES_PASSWORD"] == SECRETS["POSTGRES_PASSWORD"] and env["POSTGRES_USER"] and env["POSTGRES_DB"]
    assert "pg_isready" in healthcheck_text(pg)
    volumes = [v.split(":") for v in pg["volumes"]]
    assert any(target == "/var/lib/postgresql/data" and source in compose["volumes"] for source, target, *_ in volumes)


def test_mlflow_server(compose):
    services = compose["services"]
    mlflow, pg = services["mlflow"], environment(services["postgres"])
    args = tokens(mlflow)
    # One start command for compose and scripts/cluster.sh: the shared script adds the login, the
    # lean-server settings and served artifacts to the options given here.
    assert args[0] == "docker/mlflow-server.sh" and os.access(REPO / args[0], os.X_OK), args
    port = int(flag(args, "--port"))
    store = flag(args, "--backend-store-uri")
    match = re.fullmatch(r"postgresql(\+psycopg2)?://(?P<user>[^:@/]+)(:[^@]*)?@(?P<host>[^:/]+):(?P<port>\d+)/(?P<db>\w+)", store)
    assert match, store
    assert (match["user"], match["host"], match["port"], match["db"]) == (pg["POSTGRES_USER"], "postgres", "5432",
                                                                          pg["POSTGRES_DB"])
    assert match.group(3) is None, "the password goes in PGPASSWORD, not into the URI on the command line"
    assert environment(mlflow).get("PGPASSWORD") == pg["POSTGRES_PASSWORD"]
    destination = flag(args, "--artifacts-destination")
    assert any(v.split(":")[1] == destination for v in mlflow["volumes"]), "artifacts must live in a volume"
    assert flag(args, "--host") == "0.0.0.0"
    # The login: the admin password is the required secret, and the sweeper logs in with it.
    env = environment(mlflow)
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == SECRETS["MLFLOW_TRACKING_PASSWORD"]
    sweeper = environment(services["sweeper"])
    assert (sweeper["MLFLOW_TRACKING_USERNAME"], sweeper["MLFLOW_TRACKING_PASSWORD"]) == \
        (env["MLFLOW_AUTH_ADMIN_USERNAME"], env["MLFLOW_AUTH_ADMIN_PASSWORD"])
    assert any(v.split(":")[1] == env["MLFLOW_AUTH_DIR"] for v in mlflow["volumes"]), "the user store must persist"
    # Every client's Host header is allowed: the services' URI, and the UI through the published port.
    allowed = set(flag(args, "--allowed-hosts").split(","))
    for name in RAY_SERVICES:
        uri = environment(services[name])["MLFLOW_TRACKING_URI"]
        assert re.fullmatch(r"http://mlflow:(\d+)", uri) and int(uri.rsplit(":", 1)[1]) == port, uri
        assert uri[len("http://"):] in allowed, (uri, allowed)
    published = [str(p).split(":") for p in mlflow.get("ports", [])]
    assert published and all(int(p[-1]) == port for p in published)
    for p in published:
        assert {f"localhost:{p[-2]}", f"127.0.0.1:{p[-2]}"} <= allowed, (p, allowed)
    check = healthcheck_text(mlflow)
    assert "/health" in check and str(port) in check
    assert depends(mlflow) == {"postgres": {"condition": "service_healthy"}}


def test_ray_head_and_workers(compose):
    services = compose["services"]
    head, worker = tokens(services["ray-head"]), tokens(services["ray-worker"])
    assert head[:3] == ["ray", "start", "--head"] and worker[:2] == ["ray", "start"]
    port = int(flag(head, "--port"))
    assert flag(worker, "--address") == f"ray-head:{port}"
    for args in (head, worker):
        assert flag(args, "--block") is True
        assert int(flag(args, "--num-cpus")) >= 1
    # The dashboard (Ray's Job Submission API, `sweeper run --cluster`) on the host's loopback only;
    # the token guards it (RAY_AUTH_MODE=token on every Ray process).
    assert flag(head, "--include-dashboard") == "true" and flag(head, "--dashboard-host") == "0.0.0.0"
    dashboard = flag(head, "--dashboard-port")
    assert [str(p) for p in services["ray-head"]["ports"]] == [f"127.0.0.1:8265:{dashboard}"]
    assert services["ray-head"]["environment"]["RAY_AUTH_MODE"] == "token"
    assert "ray status" in healthcheck_text(services["ray-head"]) and str(port) in healthcheck_text(services["ray-head"])
    # `scale`: read by docker-compose 1.29 and Compose v2 (1.29 ignores deploy.replicas, and refuses both).
    assert int(services["ray-worker"]["scale"]) >= 1 and "replicas" not in services["ray-worker"].get("deploy", {})
    assert str(interpolate(raw(), {**SECRETS, "RAY_WORKERS": "3"})["services"]["ray-worker"]["scale"]) == "3"
    assert depends(services["ray-worker"])["ray-head"]["condition"] == "service_healthy"


def test_sweeper_service(compose):
    services = compose["services"]
    sweeper = services["sweeper"]
    port = int(flag(tokens(services["ray-head"]), "--port"))
    assert "run" in sweeper["profiles"]
    args = tokens(sweeper)
    i = args.index("sweeper")
    assert args[i + 1] == "run" and (REPO / args[i + 2]).is_file(), args
    assert args[i + 2] == "sweeps/quickstart.yaml"
    assert flag(args, "--address") == f"ray-head:{port}"
    # A driver needs a raylet on its own machine: the container joins the cluster first.
    assert args[0] == "docker/join-ray.sh" and os.access(REPO / args[0], os.X_OK)
    env = environment(sweeper)
    assert env["RAY_ADDRESS"] == f"ray-head:{port}"
    mlflow_port = int(flag(tokens(services["mlflow"]), "--port"))
    assert env["MLFLOW_TRACKING_URI"] == f"http://mlflow:{mlflow_port}"
    assert {k: v["condition"] for k, v in depends(sweeper).items()} == {"mlflow": "service_healthy",
                                                                        "ray-head": "service_healthy"}
    assert sweeper.get("restart", "no") == "no"


def test_ray_auth_is_the_same_on_every_ray_process(compose):
    services = compose["services"]
    modes = {name: environment(services[name]).get("RAY_AUTH_MODE") for name in RAY_SERVICES}
    assert len(set(modes.values())) == 1 and None not in modes.values(), modes
    tokens_ = {name: environment(services[name]).get("RAY_AUTH_TOKEN") for name in RAY_SERVICES}
    assert set(tokens_.values()) == {SECRETS["RAY_AUTH_TOKEN"]}, tokens_
    assert modes["ray-head"] == "token"


def test_compose_sanity(compose):
    services = compose["services"]
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        for dep, spec in depends(service).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert spec.get("condition", "service_started") in {"service_started", "service_healthy",
                                                                 "service_completed_successfully"}
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy but it has no healthcheck"
        for port in service.get("ports", []):
            if isinstance(port, int):
                continue
            parts = str(port).split(":")
            assert 2 <= len(parts) <= 3 and all(p.isdigit() for p in parts[-2:]), f"{name}: bad port {port!r}"
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if not source.startswith((".", "/", "~")):
                assert source in declared_volumes, f"{name}: volume {source} is not declared"
        if "healthcheck" in service:
            # podman 4.3's Docker API splits the arguments of a ["CMD", ...] check at spaces.
            test = service["healthcheck"]["test"]
            assert isinstance(test, str) or test[0] in {"CMD-SHELL", "NONE"}, (name, test)
        assert "image" in service or "build" in service
    # docker-compose 1.29 refuses a top-level `name:`; the project name comes from .env or -p.
    assert "name" not in compose
    assert env_example().get("COMPOSE_PROJECT_NAME")


def test_dockerfile_installs_the_project():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:(\$\{PYTHON_VERSION\}|3\.11)-slim", text, re.M)
    assert re.search(r"^ARG PYTHON_VERSION=3\.11$", text, re.M) or "FROM python:3.11-slim" in text
    assert re.search(r"^COPY \. ", text, re.M)
    assert re.search(r"pip install [\"']?\.\[cluster\]", text)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".cluster", ".git"} <= set(ignored)


def _docker_compose() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config():
    command = _docker_compose()
    if command is None:
        pytest.skip("no `docker compose` plugin nor docker-compose here")
    env = {**os.environ, **SECRETS}
    out = subprocess.run([*command, "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True,
                         timeout=60, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([*command, "-f", str(COMPOSE), "--profile", "run", "config", "--services"],
                         capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert out.returncode == 0 and SERVICES <= set(out.stdout.split()), out.stdout + out.stderr


# -- the same topology with plain processes ----------------------------------------------------------

SCRIPT = REPO / "scripts" / "cluster.sh"


def test_cluster_script_parses():
    for script in (SCRIPT, REPO / ".ci" / "cluster.sh", REPO / "docker" / "join-ray.sh"):
        out = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, f"{script}: {out.stderr}"


def test_cluster_script_env_and_usage(tmp_path):
    env = {**os.environ, "CLUSTER_DIR": str(tmp_path / "state"), "CLUSTER_MLFLOW_PORT": "51234",
           "CLUSTER_RAY_PORT": "51235"}
    out = subprocess.run(["bash", str(SCRIPT), "env"], capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr
    exports = dict(re.findall(r"^export (\w+)=(.*)$", out.stdout, re.M))
    assert exports["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:51234"
    assert exports["RAY_ADDRESS"] == "127.0.0.1:51235"
    assert exports["RAY_AUTH_MODE"] == "token"
    assert exports["RAY_AUTH_TOKEN_PATH"] == str(tmp_path / "state" / "ray_auth_token")
    assert exports["CLUSTER_DIR"] == str(tmp_path / "state")
    # The MLflow login: a generated password (never a default), kept private in the state folder.
    assert exports["MLFLOW_TRACKING_USERNAME"] == "admin" and len(exports["MLFLOW_TRACKING_PASSWORD"]) >= 12
    stored = tmp_path / "state" / "mlflow_password"
    assert stored.read_text() == exports["MLFLOW_TRACKING_PASSWORD"] and stored.stat().st_mode & 0o077 == 0
    usage = subprocess.run(["bash", str(SCRIPT), "bogus"], capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert usage.returncode == 2 and "up" in usage.stderr and "down" in usage.stderr


def test_cluster_script_mirrors_the_compose_flags():
    text = SCRIPT.read_text()
    for needle in ("docker/mlflow-server.sh", "--artifacts-destination", "--allowed-hosts", "--include-dashboard=false",
                   "RAY_AUTH_MODE=token", "postgresql+psycopg2://", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        assert needle in text, needle
    # What both paths get from the shared start script.
    shared = MLFLOW_SERVER.read_text()
    for needle in ("--app-name basic-auth", "--serve-artifacts", "--workers 1", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false"):
        assert needle in shared, needle


def test_mlflow_server_script_refuses_to_start_without_an_admin_password(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_AUTH_")}
    env["MLFLOW"] = "/bin/false"  # never reached
    for password, message in ((None, "MLFLOW_AUTH_ADMIN_PASSWORD is not set"), ("", "is not set"),
                              ("short", "at least 12 characters")):
        if password is not None:
            env["MLFLOW_AUTH_ADMIN_PASSWORD"] = password
        out = subprocess.run(["bash", str(MLFLOW_SERVER)], capture_output=True, text=True, timeout=30, env=env,
                             cwd=tmp_path)
        assert out.returncode == 2 and message in out.stderr, (password, out.stderr)


def test_mlflow_server_script_writes_the_auth_config(tmp_path):
    env = {**os.environ, "MLFLOW_AUTH_ADMIN_PASSWORD": "a-long-enough-password", "MLFLOW_AUTH_DIR": str(tmp_path / "auth"),
           "MLFLOW": "echo"}  # prints the command it would run
    env.pop("MLFLOW_FLASK_SERVER_SECRET_KEY", None)
    out = subprocess.run(["bash", str(MLFLOW_SERVER), "--port", "1"], capture_output=True, text=True, timeout=30,
                         env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["server", "--app-name", "basic-auth", "--serve-artifacts", "--workers", "1", "--port", "1"]
    ini = (tmp_path / "auth" / "basic_auth.ini").read_text()
    assert f"database_uri = sqlite:///{tmp_path}/auth/basic_auth.db" in ini and "admin_username = admin" in ini
    assert "a-long-enough-password" not in ini, "the password stays in the environment"
    key = tmp_path / "auth" / "secret_key"
    assert len(key.read_text()) == 64 and key.stat().st_mode & 0o077 == 0


def test_cluster_script_keeps_the_postgres_password_off_command_lines():
    """SQL that carries a password reaches psql on stdin (`ps` shows every argument of a process)."""
    for number, line in enumerate(SCRIPT.read_text().splitlines(), 1):
        if "PASSWORD" in line and "psql" in line:
            assert " -c " not in line and "-f -" in line, f"scripts/cluster.sh:{number}: {line.strip()}"
