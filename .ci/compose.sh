#!/usr/bin/env bash
# CI: docker-compose.yml brought up for real, with containers, then the tests against them
# (tests/cluster/test_compose_live.py, pytest -m compose), then everything taken down whatever happens.
#
# There is no Docker engine here and no container registry: podman from Debian serves the Docker
# API on a socket of its own, Debian's docker-compose 1.29 talks to it, and the two base images the
# compose file names are STAND-INS built from Debian packages (ci/images/: Debian's Python 3.11.2 as
# python:3.11-slim, PostgreSQL 15 as postgres:16). The project image is docker/Dockerfile, built
# with pip installing from a wheelhouse made on the host (never committed, never inside an image).
#
#   bash .ci/compose.sh              as root; installs podman, runc, debootstrap, docker-compose
#
# Idempotent: images already built are kept (a stand-in is rebuilt when its ci/images/ folder changes);
# each run starts from no containers and no volumes and leaves none: `down -v`, the healthcheck ticker
# and the podman service are stopped by PID on exit, failure or interrupt included.
# Settings: COMPOSE_CI_DIR (state: socket, wheelhouse, env file; default /var/tmp/cnn-sweeper-compose),
# COMPOSE_CI_MLFLOW_PORT (the UI on the host's 127.0.0.1, default 55500), COMPOSE_CI_DASHBOARD_PORT (Ray's
# dashboard and Job Submission API on the host's 127.0.0.1, default 55565), COMPOSE_CI_PURGE=1 (also
# remove the images and the state folder at the end), COMPOSE_TEST_TIMEOUT (default 1200 s).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

STATE=${COMPOSE_CI_DIR:-/var/tmp/cnn-sweeper-compose}
ARTIFACTS=$REPO/.ci/artifacts
VENV=${VENV:-.venv}
PROJECT=cnn-sweeper-ci
MLFLOW_HOST_PORT=${COMPOSE_CI_MLFLOW_PORT:-55500}
DASHBOARD_HOST_PORT=${COMPOSE_CI_DASHBOARD_PORT:-55565}
SWEEPER_IMAGE=localhost/cnn-sweeper:ci
STAND_IN_LABEL=org.cnn-sweeper.stand-in
started=$(date +%s)
SERVICE_PID=
TICKER_PID=

log() { printf '[compose-ci %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[compose-ci] ERROR: %s\n' "$*" >&2; exit 1; }
elapsed() { echo $(( $(date +%s) - $1 ))s; }

[[ $(id -u) == 0 ]] || die "run as root (podman's storage and network, apt-get)"
mkdir -p "$STATE" "$ARTIFACTS"

COMPOSE=(docker-compose --env-file "$STATE/compose.env" -p "$PROJECT" -f "$REPO/docker-compose.yml")

cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n $SERVICE_PID ]] && kill -0 "$SERVICE_PID" 2>/dev/null; then
        if ((status != 0)); then
            log "logs of the containers (last 30 lines each) into $ARTIFACTS/compose-logs.txt"
            timeout 60 "${COMPOSE[@]}" --profile run logs --no-color --tail 30 > "$ARTIFACTS/compose-logs.txt" 2>&1
            tail -n 60 "$ARTIFACTS/compose-logs.txt"
        fi
        log "down -v (containers, network, volumes)"
        local down_started
        down_started=$(date +%s)
        timeout 180 "${COMPOSE[@]}" --profile run down -v --remove-orphans --timeout 10 2>&1 | tail -n 3
        log "down in $(elapsed "$down_started")"
    fi
    # Whatever compose could not remove (a timeout, a container started by a test).
    local left
    left=$(podman ps -aq --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null)
    [[ -n $left ]] && { log "removing leftover containers $left"; podman rm -f $left >/dev/null 2>&1; }
    left=$(podman volume ls -q --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null)
    [[ -n $left ]] && { log "removing leftover volumes $left"; podman volume rm -f $left >/dev/null 2>&1; }
    if [[ -n $TICKER_PID ]]; then kill "$TICKER_PID" 2>/dev/null; wait "$TICKER_PID" 2>/dev/null; fi
    if [[ -n $SERVICE_PID ]]; then
        log "stopping the podman API service (PID $SERVICE_PID)"
        kill "$SERVICE_PID" 2>/dev/null
        wait "$SERVICE_PID" 2>/dev/null
        rm -f "$STATE/podman-service.pid"
    fi
    rm -f "$STATE/podman.sock"
    if [[ -n ${COMPOSE_CI_PURGE:-} ]]; then
        log "purging the images and $STATE"
        podman rmi -f "$SWEEPER_IMAGE" docker.io/library/python:3.11-slim docker.io/library/postgres:16 \
            localhost/debian:bookworm >/dev/null 2>&1
        rm -rf "$STATE"
    fi
    log "disk: podman storage $(du -sh /var/lib/containers/storage 2>/dev/null | cut -f1), state $(du -sh "$STATE" 2>/dev/null | cut -f1)"
    log "compose step: $(elapsed "$started") in all, exit $status"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -- packages and podman ---------------------------------------------------------------------------
step=$(date +%s)
missing=()
for pair in podman:podman runc:runc debootstrap:debootstrap docker-compose:docker-compose chromium:chromium; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
# Service names resolve inside a compose network only with CNI's dnsname plugin (podman 4.3 on CNI).
[[ -x /usr/lib/cni/dnsname ]] || missing+=(golang-github-containernetworking-plugin-dnsname)
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    # --no-install-recommends: docker-compose would otherwise bring docker.io along.
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") \
        > "$STATE/apt-get.log" 2>&1 || { tail -n 20 "$STATE/apt-get.log"; die "apt-get install failed"; }
fi
log "packages ready ($(elapsed "$step")): $(podman --version), $(docker-compose --version)"

# podman's defaults for this VM, in a file of our own (CONTAINERS_CONF), not machine-wide: the VM
# lacks CAP_SYS_RESOURCE (default ulimits fail in crun), crun refuses its hybrid cgroups, and no
# systemd runs (journald events, systemd cgroups).
cat > "$STATE/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
events_logger = "file"
cgroup_manager = "cgroupfs"
EOF
export CONTAINERS_CONF=$STATE/containers.conf
log "podman settings: CONTAINERS_CONF=$CONTAINERS_CONF (runc, cgroupfs, file events, ulimits nofile 20000)"

# A service left by a run that was killed outright (no trap ran): stopped by its recorded PID.
if [[ -s $STATE/podman-service.pid ]]; then
    old=$(cat "$STATE/podman-service.pid")
    if tr '\0' ' ' < "/proc/$old/cmdline" 2>/dev/null | grep -q "podman system service"; then
        log "stopping the podman API service a previous run left (PID $old)"
        kill "$old" 2>/dev/null || true
    fi
fi
rm -f "$STATE/podman.sock"
podman system service --time=0 "unix://$STATE/podman.sock" > "$STATE/podman-service.log" 2>&1 &
SERVICE_PID=$!
echo "$SERVICE_PID" > "$STATE/podman-service.pid"
for _ in $(seq 100); do [[ -S $STATE/podman.sock ]] && break; sleep 0.1; done
[[ -S $STATE/podman.sock ]] || die "podman system service did not create $STATE/podman.sock"
export DOCKER_HOST=unix://$STATE/podman.sock
log "podman API service PID $SERVICE_PID on $DOCKER_HOST"

# -- images ----------------------------------------------------------------------------------------
step=$(date +%s)
if ! podman image exists localhost/debian:bookworm; then
    log "debootstrap --variant=minbase bookworm (the root of the stand-in images)"
    rm -rf "$STATE/rootfs"
    debootstrap --variant=minbase bookworm "$STATE/rootfs" http://deb.debian.org/debian > "$STATE/debootstrap.log" 2>&1 \
        || { tail -n 20 "$STATE/debootstrap.log"; die "debootstrap failed"; }
    tar -C "$STATE/rootfs" -c . | podman import - localhost/debian:bookworm > /dev/null
    rm -rf "$STATE/rootfs"
fi

# A stand-in is rebuilt when its folder changes (the label holds the folder's hash).
stand_in() {
    local name=$1 dir=$REPO/ci/images/$2 hash
    hash=$(cd "$dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
    if [[ $(podman image inspect --format "{{ index .Labels \"$STAND_IN_LABEL\" }}" "$name" 2>/dev/null) != "$hash" ]]; then
        log "building the stand-in $name from ci/images/$2"
        podman build -q --label "$STAND_IN_LABEL=$hash" -t "$name" "$dir" > /dev/null
    fi
}
stand_in docker.io/library/python:3.11-slim python
stand_in docker.io/library/postgres:16 postgres
log "STAND-IN base images (Debian packages, not the official images; no registry is reachable):"
log "  docker.io/library/python:3.11-slim = Debian bookworm's $(podman run --rm docker.io/library/python:3.11-slim python --version)"
log "  docker.io/library/postgres:16      = Debian bookworm's PostgreSQL $(podman run --rm --entrypoint postgres docker.io/library/postgres:16 --version | awk '{print $3}')"

# The wheelhouse: the project's dependencies as wheels, made on the host with its pip (the image
# build has no index and no certificates), mounted into the build only.
[[ -x $VENV/bin/pip ]] || die "no $VENV/bin/pip: make venv first (or set VENV)"
log "wheelhouse $STATE/wheelhouse (pip wheel .[cluster])"
"$VENV/bin/pip" wheel -q --find-links "$STATE/wheelhouse" -w "$STATE/wheelhouse" ".[cluster]" setuptools wheel \
    > "$STATE/wheelhouse.log" 2>&1 || { tail -n 20 "$STATE/wheelhouse.log"; die "pip wheel failed"; }
rm -f "$STATE"/wheelhouse/cnn_sweeper-*.whl  # the image installs the project from its source
log "building the project image $SWEEPER_IMAGE from docker/Dockerfile"
podman build -q -v "$STATE/wheelhouse:/wheels:ro" -f docker/Dockerfile -t "$SWEEPER_IMAGE" . > /dev/null
podman image prune -f > /dev/null  # the previous runs' project images
log "images ready ($(elapsed "$step")); podman storage $(du -sh /var/lib/containers/storage | cut -f1)"

# -- the cluster -------------------------------------------------------------------------------------
# Fresh secrets for every run, in an env file of CI's own (a user's .env stays untouched).
secret() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
(umask 077 && cat > "$STATE/compose.env" <<EOF
POSTGRES_PASSWORD=$(secret 16)
RAY_AUTH_TOKEN=$(secret 32)
MLFLOW_TRACKING_USERNAME=admin
MLFLOW_TRACKING_PASSWORD=$(secret 16)
SWEEPER_IMAGE=$SWEEPER_IMAGE
MLFLOW_HOST_PORT=$MLFLOW_HOST_PORT
RAY_DASHBOARD_HOST_PORT=$DASHBOARD_HOST_PORT
RAY_WORKERS=2
RAY_HEAD_CPUS=0
RAY_WORKER_CPUS=1
RAY_OBJECT_STORE_BYTES=200000000
RAY_SHM_SIZE=512mb
EOF
)

# No systemd here: podman cannot schedule health checks itself ("unable to get systemd connection"),
# so `depends_on: condition: service_healthy` would wait forever. This ticker runs them.
(
    while sleep 2; do
        for id in $(podman ps -q --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null); do
            podman healthcheck run "$id" > /dev/null 2>&1 || true
        done
    done
) &
TICKER_PID=$!
log "healthcheck ticker PID $TICKER_PID (podman healthcheck run, every 2 s)"

log "down -v (a previous run's leftovers, if any)"
"${COMPOSE[@]}" --profile run down -v --remove-orphans --timeout 5 > /dev/null 2>&1 || true
log "up -d postgres mlflow ray-head ray-worker (2 worker containers)"
step=$(date +%s)
"${COMPOSE[@]}" up -d --no-build postgres mlflow ray-head ray-worker 2>&1 | sed 's/^/  /'
log "up returned after $(elapsed "$step") (postgres, mlflow and ray-head healthy)"
# The worker containers have no health check of their own: healthy = their nodes alive in Ray.
# (A worker whose `ray start` times out exits, and its restart policy starts it again.)
deadline=$(( $(date +%s) + ${COMPOSE_CI_NODES_TIMEOUT:-600} ))
until [[ $(timeout 60 "${COMPOSE[@]}" exec -T ray-head ray status 2>/dev/null \
           | awk '/^Active:/ {a = 1; next} /^[A-Z][a-z ]*:/ {a = 0} a && / node_/' | grep -c .) -ge 3 ]]; do
    (( $(date +%s) < deadline )) || die "the 2 Ray worker containers did not join the head in ${COMPOSE_CI_NODES_TIMEOUT:-600}s"
    sleep 3
done
UP_SECONDS=$(( $(date +%s) - step ))
log "up to healthy in ${UP_SECONDS}s: postgres, mlflow, ray-head healthy and both worker nodes alive in Ray"

export COMPOSE_CI=1 COMPOSE_PROJECT=$PROJECT COMPOSE_ENV_FILE=$STATE/compose.env COMPOSE_FILE_PATH=$REPO/docker-compose.yml
export COMPOSE_ARTIFACTS=$ARTIFACTS COMPOSE_UP_SECONDS=$UP_SECONDS
log "tests against the containers: pytest -m compose tests/cluster/test_compose_live.py"
timeout "${COMPOSE_TEST_TIMEOUT:-1200}" "$VENV/bin/python" -m pytest -q -m compose tests/cluster/test_compose_live.py
