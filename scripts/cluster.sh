#!/usr/bin/env bash
# A local stand-in for docker-compose.yml, with plain processes on 127.0.0.1:
#
#   PostgreSQL  ->  MLflow server (login, artifacts served from a folder)  <-  Ray head + one Ray worker node
#
#   scripts/cluster.sh up        start what is not running, wait until everything is healthy
#   scripts/cluster.sh env       print the `export ...` lines a driver (sweeper run, pytest) needs
#   scripts/cluster.sh status    what runs, in one line each
#   scripts/cluster.sh worker    start the Ray worker node again (after it was killed)
#   scripts/cluster.sh down      stop everything; safe to call twice; keeps the data
#   scripts/cluster.sh purge     down, then delete the state folder
#   scripts/cluster.sh stop mlflow|postgres|ray   stop one part (fault tests: `up` starts it again)
#
#   eval "$(scripts/cluster.sh env)" && sweeper run sweeps/quickstart.yaml
#
# Settings (environment, with defaults):
#   CLUSTER_DIR=.cluster          state: databases, artifacts, logs, Ray session, auth token (gitignored)
#   VENV=.venv                    the project's virtual environment (ray, mlflow, psycopg2)
#   CLUSTER_PG_PORT=55432  CLUSTER_MLFLOW_PORT=55000  CLUSTER_RAY_PORT=56379
#   CLUSTER_HEAD_CPUS=1  CLUSTER_WORKER_CPUS=1  CLUSTER_OBJECT_STORE_MB=512 (per Ray node)
#   CLUSTER_TIMEOUT=120           seconds to wait for each service to become healthy
#   CLUSTER_NO_INSTALL=1          never apt-get install PostgreSQL (fail instead)
#   CLUSTER_MLFLOW_PASSWORD       the MLflow admin's password (>= 12 characters) when the user store is
#                                 created; default: random, kept in CLUSTER_DIR/mlflow_password
#
# Ray replaces 127.0.0.1 by the machine's address for its nodes (`--node-ip-address 127.0.0.1` is
# turned into it too), and its GCS and raylet ports listen on every interface: hence token auth.
# Ray runs with RAY_AUTH_MODE=token on every process (nodes and drivers), with a token generated
# into CLUSTER_DIR and its own HOME there, so a ~/.ray/auth_token of another cluster never clashes.
# Every process started here carries CNN_SWEEPER_CLUSTER=<state folder> in its environment; `down`
# stops exactly those (never `ray stop`, which would stop every Ray of the machine).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

CLUSTER_DIR=${CLUSTER_DIR:-.cluster}
mkdir -p "$CLUSTER_DIR"
CLUSTER_DIR=$(cd "$CLUSTER_DIR" && pwd)
VENV=${VENV:-.venv}
VENV=$(cd "$VENV" 2>/dev/null && pwd || echo "$VENV")
# `up` records its settings; the other commands use them unless the environment says otherwise.
SETTINGS=$CLUSTER_DIR/settings
if [[ -f $SETTINGS ]]; then
    # shellcheck disable=SC1090
    source "$SETTINGS"
fi
PG_PORT=${CLUSTER_PG_PORT:-${SAVED_PG_PORT:-55432}}
MLFLOW_PORT=${CLUSTER_MLFLOW_PORT:-${SAVED_MLFLOW_PORT:-55000}}
RAY_PORT=${CLUSTER_RAY_PORT:-${SAVED_RAY_PORT:-56379}}
HEAD_CPUS=${CLUSTER_HEAD_CPUS:-${SAVED_HEAD_CPUS:-1}}
WORKER_CPUS=${CLUSTER_WORKER_CPUS:-${SAVED_WORKER_CPUS:-1}}
OBJECT_STORE_MB=${CLUSTER_OBJECT_STORE_MB:-${SAVED_OBJECT_STORE_MB:-512}}
TIMEOUT=${CLUSTER_TIMEOUT:-120}
PG_DB=mlflow
PG_USER=mlflow

LOGS=$CLUSTER_DIR/logs
ARTIFACTS=$CLUSTER_DIR/mlartifacts
RAY_HOME=$CLUSTER_DIR/home
TOKEN_FILE=$CLUSTER_DIR/ray_auth_token
PG_PASSWORD_FILE=$CLUSTER_DIR/pg_password
MLFLOW_PASSWORD_FILE=$CLUSTER_DIR/mlflow_password
MLFLOW_USER=admin
MLFLOW_PID=$CLUSTER_DIR/mlflow.pid
MARK=CNN_SWEEPER_CLUSTER
ROLE=CNN_SWEEPER_ROLE

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }

# Unix socket paths are limited to 107 bytes and Ray puts <temp>/session_<40 chars>/sockets/plasma_store.N
# under its temp dir: a deep state folder gets its Ray temp dir under /tmp instead (recorded in ray_tmp).
ray_tmp() {
    if [[ -n ${CLUSTER_RAY_TMP:-} ]]; then echo "$CLUSTER_RAY_TMP"; return; fi
    if [[ -f $CLUSTER_DIR/ray_tmp ]]; then cat "$CLUSTER_DIR/ray_tmp"; return; fi
    local dir=$CLUSTER_DIR/ray
    if (( ${#dir} > 40 )); then
        dir=/tmp/cnn-sweeper-ray-$(printf '%s' "$CLUSTER_DIR" | cksum | cut -d' ' -f1)
    fi
    echo "$dir" > "$CLUSTER_DIR/ray_tmp"
    echo "$dir"
}

# -- processes of this cluster --------------------------------------------------------------------

# A process that exists and is not a zombie (PID 1 of some containers never reaps orphans, and
# `kill -0` succeeds on a zombie).
alive() {
    local stat
    stat=$(cat 2>/dev/null < "/proc/$1/stat") || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# PIDs of the live processes whose environment carries our marker (this state folder) and, given a
# pattern, whose role (CNN_SWEEPER_ROLE: postgres, mlflow, ray-head, ray-worker) matches it; then
# all their descendants: Ray's agents and workers rewrite their command line and environment
# (setproctitle), so they are found as children of a marked raylet.
marked_pids() {
    local p pid ppid env stat role_pattern=${1:-}
    local -a found=()
    local -A parent=()
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        stat=$(cat 2>/dev/null < "$p/stat") || continue
        stat=${stat##*) }
        [[ ${stat:0:1} == Z ]] && continue
        read -r _ ppid _ <<< "$stat"
        parent[$pid]=$ppid
        env=$(tr '\0' '\n' 2>/dev/null < "$p/environ") || continue
        grep -qxF "$MARK=$CLUSTER_DIR" <<< "$env" || continue
        if [[ -n $role_pattern ]]; then
            grep -qxE "$ROLE=($role_pattern)" <<< "$env" || continue
        fi
        found+=("$pid")
    done
    local -A seen=()
    for pid in "${found[@]}"; do seen[$pid]=1; done
    local grew=1
    while ((grew)); do
        grew=0
        for pid in "${!parent[@]}"; do
            if [[ -z ${seen[$pid]:-} && -n ${seen[${parent[$pid]}]:-} ]]; then seen[$pid]=1; grew=1; fi
        done
    done
    ((${#seen[@]})) && printf '%s\n' "${!seen[@]}" | sort -n
    return 0
}

# Processes of a role whose command line matches a pattern, e.g. `role_matching ray-worker raylet`.
role_matching() {
    local pid
    for pid in $(marked_pids "$1"); do
        if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qE -- "$2"; then echo "$pid"; fi
    done
    return 0
}

# SIGTERM, then SIGKILL what is left after a grace period.
stop_pids() {
    local grace=$1; shift
    local pids=("$@") pid alive i
    ((${#pids[@]})) || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        alive=()
        for pid in "${pids[@]}"; do alive "$pid" && alive+=("$pid"); done
        ((${#alive[@]})) || return 0
        sleep 0.1
    done
    log "killing ${alive[*]} (still running ${grace}s after SIGTERM:$(for pid in "${alive[@]}"; do printf ' %s' "$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -d' ' -f1 | xargs -r basename 2>/dev/null)"; done))"
    kill -KILL "${alive[@]}" 2>/dev/null || true
}

# -- PostgreSQL -----------------------------------------------------------------------------------

pg_bin() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
    [[ -n $bin && -x $bin/initdb ]] && echo "$bin"
}

install_postgres() {
    [[ -n $(pg_bin) ]] && return 0
    [[ -n ${CLUSTER_NO_INSTALL:-} ]] && die "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb) and CLUSTER_NO_INSTALL is set"
    [[ $(id -u) == 0 ]] || die "PostgreSQL is not installed; as root: apt-get update && apt-get install -y postgresql"
    command -v apt-get >/dev/null || die "PostgreSQL is not installed and there is no apt-get to install it"
    log "installing PostgreSQL (apt-get update && apt-get install -y postgresql)"
    local started=$SECONDS
    {
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
    } > "$LOGS/apt-get.log" 2>&1 || { tail -n 20 "$LOGS/apt-get.log" >&2; die "apt-get install postgresql failed (log: $LOGS/apt-get.log)"; }
    [[ -n $(pg_bin) ]] || die "apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb exists"
    log "PostgreSQL installed in $((SECONDS - started))s"
}

# Run a PostgreSQL binary as the postgres user when we are root (initdb and postgres refuse root).
as_pg() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- env "$MARK=$CLUSTER_DIR" "$ROLE=postgres" "$@"
    else
        env "$MARK=$CLUSTER_DIR" "$ROLE=postgres" "$@"
    fi
}

# The data folder: inside the state folder when the postgres user can reach it, else under /var/tmp.
pg_data() {
    if [[ -f $CLUSTER_DIR/pg_data ]]; then cat "$CLUSTER_DIR/pg_data"; return; fi
    local dir=$CLUSTER_DIR/pg
    if [[ $(id -u) == 0 ]] && ! runuser -u postgres -- test -x "$CLUSTER_DIR"; then
        dir=/var/tmp/cnn-sweeper-pg-$(printf '%s' "$CLUSTER_DIR" | cksum | cut -d' ' -f1)
    fi
    echo "$dir" > "$CLUSTER_DIR/pg_data"
    echo "$dir"
}

# Its log: beside the other logs, unless the data folder had to move out of the state folder.
pg_log() {
    local data
    data=$(pg_data)
    if [[ $data == "$CLUSTER_DIR"/* ]]; then echo "$LOGS/postgres.log"; else echo "$data.log"; fi
}

pg_ready() { "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2 >/dev/null 2>&1; }

start_postgres() {
    install_postgres
    local bin data log started=$SECONDS
    bin=$(pg_bin)
    data=$(pg_data)
    log=$(pg_log)
    if [[ ! -s $data/PG_VERSION ]]; then
        log "initialising PostgreSQL in $data ($("$bin/postgres" --version))"
        mkdir -p "$data"
        [[ $(id -u) == 0 ]] && chown postgres: "$data"
        chmod 700 "$data"
        as_pg "$bin/initdb" -D "$data" -U postgres --auth-local=peer --auth-host=scram-sha-256 -E UTF8 \
            --no-instructions > "$LOGS/initdb.log" 2>&1 || { tail -n 20 "$LOGS/initdb.log" >&2; die "initdb failed"; }
    fi
    if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        log "PostgreSQL already running ($data)"
    else
        log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
        touch "$log"
        [[ $(id -u) == 0 ]] && chown postgres: "$log"
        as_pg "$bin/pg_ctl" -D "$data" -l "$log" -w -t "$TIMEOUT" \
            -o "-p $PG_PORT -h 127.0.0.1 -k $data" start >/dev/null \
            || { tail -n 20 "$log" >&2; die "PostgreSQL did not start (log: $log)"; }
    fi
    local deadline=$((SECONDS + TIMEOUT))
    until pg_ready; do
        ((SECONDS < deadline)) || { tail -n 20 "$log" >&2; die "PostgreSQL not ready on 127.0.0.1:$PG_PORT after ${TIMEOUT}s (pg_isready)"; }
        sleep 0.5
    done
    if [[ ! -s $PG_PASSWORD_FILE ]]; then
        (umask 077 && "$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(16))' > "$PG_PASSWORD_FILE")
    fi
    # SQL with the password goes through psql's stdin (printf is a shell builtin), never onto a
    # command line where `ps` would show it.
    local psql=("$bin/psql" -h "$data" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA)
    if [[ $(as_pg "${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'") != 1 ]]; then
        printf "CREATE ROLE %s LOGIN PASSWORD '%s';\n" "$PG_USER" "$(cat "$PG_PASSWORD_FILE")" | as_pg "${psql[@]}" -f - >/dev/null
    else
        printf "ALTER ROLE %s PASSWORD '%s';\n" "$PG_USER" "$(cat "$PG_PASSWORD_FILE")" | as_pg "${psql[@]}" -f - >/dev/null
    fi
    if [[ $(as_pg "${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") != 1 ]]; then
        as_pg "${psql[@]}" -c "CREATE DATABASE $PG_DB OWNER $PG_USER" >/dev/null
    fi
    log "PostgreSQL ready on 127.0.0.1:$PG_PORT, database $PG_DB ($((SECONDS - started))s)"
}

stop_postgres() {
    local bin data
    bin=$(pg_bin) || return 0
    [[ -f $CLUSTER_DIR/pg_data ]] || return 0
    data=$(cat "$CLUSTER_DIR/pg_data")
    [[ -s $data/PG_VERSION ]] || return 0
    if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        log "stopping PostgreSQL"
        as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null || log "pg_ctl stop failed"
    fi
}

# -- MLflow ---------------------------------------------------------------------------------------

mlflow_healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$MLFLOW_PORT/health" >/dev/null 2>&1; }

mlflow_running() { [[ -f $MLFLOW_PID ]] && alive "$(cat "$MLFLOW_PID")"; }

# The MLflow admin's password: CLUSTER_MLFLOW_PASSWORD, else one generated once into the state folder
# (never a default). The sweeper and the tests log in with it (MLFLOW_TRACKING_USERNAME/PASSWORD).
mlflow_password() {
    if [[ -n ${CLUSTER_MLFLOW_PASSWORD:-} ]]; then echo "$CLUSTER_MLFLOW_PASSWORD"; return; fi
    if [[ ! -s $MLFLOW_PASSWORD_FILE ]]; then
        (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$MLFLOW_PASSWORD_FILE")
    fi
    cat "$MLFLOW_PASSWORD_FILE"
}

# Starts the server without waiting (Ray starts meanwhile); wait_mlflow waits for /health.
launch_mlflow() {
    MLFLOW_STARTED=
    if mlflow_running && mlflow_healthy; then
        log "MLflow already running on 127.0.0.1:$MLFLOW_PORT"
        return 0
    fi
    MLFLOW_STARTED=$SECONDS
    if mlflow_healthy; then
        die "port $MLFLOW_PORT already answers /health but not from this cluster's MLflow: set CLUSTER_MLFLOW_PORT"
    fi
    [[ -x $VENV/bin/mlflow ]] || die "no $VENV/bin/mlflow: create the venv (make venv) or set VENV"
    "$VENV/bin/python" -c 'import psycopg2' 2>/dev/null \
        || die "psycopg2 is missing from $VENV: pip install -e '.[cluster]' (make venv does)"
    mkdir -p "$ARTIFACTS" "$CLUSTER_DIR/mlflow"
    # The password goes in the environment (PGPASSWORD, read by libpq), not on the command line.
    local backend="postgresql+psycopg2://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB"
    log "starting MLflow on 127.0.0.1:$MLFLOW_PORT (basic-auth login, backend PostgreSQL, artifacts in $ARTIFACTS)"
    # docker/mlflow-server.sh: the same start as docker-compose.yml's (login, lean server, served artifacts).
    (
        cd "$CLUSTER_DIR/mlflow"
        PGPASSWORD=$(cat "$PG_PASSWORD_FILE")
        MLFLOW_AUTH_ADMIN_PASSWORD=$(mlflow_password)
        export "$MARK=$CLUSTER_DIR" "$ROLE=mlflow" PGPASSWORD MLFLOW_AUTH_ADMIN_PASSWORD \
            MLFLOW_AUTH_ADMIN_USERNAME=$MLFLOW_USER MLFLOW_AUTH_DIR=$CLUSTER_DIR/mlflow-auth MLFLOW=$VENV/bin/mlflow
        exec setsid "$REPO/docker/mlflow-server.sh" --backend-store-uri "$backend" \
            --artifacts-destination "$ARTIFACTS" --host 127.0.0.1 --port "$MLFLOW_PORT" \
            --allowed-hosts "127.0.0.1:$MLFLOW_PORT,localhost:$MLFLOW_PORT" \
            < /dev/null > "$LOGS/mlflow.log" 2>&1
    ) &
    echo $! > "$MLFLOW_PID"
}

wait_mlflow() {
    [[ -n $MLFLOW_STARTED ]] || return 0
    local deadline=$((SECONDS + TIMEOUT))
    until mlflow_healthy; do
        mlflow_running || { tail -n 30 "$LOGS/mlflow.log" >&2; die "MLflow exited during startup (log: $LOGS/mlflow.log)"; }
        ((SECONDS < deadline)) || { tail -n 30 "$LOGS/mlflow.log" >&2; die "MLflow not healthy on http://127.0.0.1:$MLFLOW_PORT/health after ${TIMEOUT}s"; }
        sleep 0.5
    done
    log "MLflow healthy at http://127.0.0.1:$MLFLOW_PORT ($((SECONDS - MLFLOW_STARTED))s after its start)"
}

stop_mlflow() {
    local pids
    pids=$(marked_pids mlflow || true)
    if mlflow_running; then pids="$(cat "$MLFLOW_PID") $pids"; fi
    if [[ -n ${pids// /} ]]; then
        log "stopping MLflow"
        # shellcheck disable=SC2086
        stop_pids 15 $(printf '%s\n' $pids | sort -u)
    fi
    rm -f "$MLFLOW_PID"
}

# -- Ray ------------------------------------------------------------------------------------------

# The environment of every Ray process of this cluster, nodes and drivers alike.
ray_env() {
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$TOKEN_FILE
    # Bounded MLflow retries in the trials (the default can block one call for ~4 minutes).
    export MLFLOW_HTTP_REQUEST_MAX_RETRIES=${MLFLOW_HTTP_REQUEST_MAX_RETRIES:-3}
    export MLFLOW_HTTP_REQUEST_TIMEOUT=${MLFLOW_HTTP_REQUEST_TIMEOUT:-60}
}

# Ids of the alive nodes, as `ray status` lists them (none when the head does not answer).
ray_node_ids() {
    ray_env
    local out
    out=$(timeout 30 env HOME="$RAY_HOME" "$VENV/bin/ray" status --address "127.0.0.1:$RAY_PORT" 2>/dev/null) || return 0
    awk '/^Active:/ {a = 1; next} /^[A-Z][a-z ]*:/ {a = 0} a && / node_/ {sub(/.*node_/, ""); print}' <<< "$out"
}

ray_nodes() { ray_node_ids | grep -c . || true; }

# The node id of the raylet of a role (ray-head, ray-worker), from its command line.
raylet_node_id() {
    local pid
    for pid in $(role_matching "$1" '/raylet '); do
        tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | sed -n 's/^--node_id=//p'
    done
}

wait_node() {
    local id=$1 what=$2 deadline=$((SECONDS + TIMEOUT))
    until ray_node_ids | grep -qxF "$id"; do
        ((SECONDS < deadline)) || die "Ray: the $what (node $id) is not alive after ${TIMEOUT}s (ray status --address 127.0.0.1:$RAY_PORT; logs under $(ray_tmp)/session_latest/logs)"
        sleep 1
    done
}

head_running() { [[ -n $(role_matching ray-head gcs_server || true) ]]; }

# ray start for one node role (ray-head | ray-worker), marked so `down` finds its processes;
# the remaining arguments are the role's own `ray start` options.
ray_start() {
    local role=$1 tmp=$2
    shift 2
    timeout "$TIMEOUT" env MLFLOW_TRACKING_URI="http://127.0.0.1:$MLFLOW_PORT" \
        "$MARK=$CLUSTER_DIR" "$ROLE=$role" HOME="$RAY_HOME" RAY_USAGE_STATS_ENABLED=0 "$VENV/bin/ray" start "$@" \
        --object-store-memory $((OBJECT_STORE_MB * 1024 * 1024)) \
        --temp-dir "$tmp" --disable-usage-stats < /dev/null > "$LOGS/$role.log" 2>&1 \
        || { tail -n 30 "$LOGS/$role.log" >&2; die "ray start ($role) failed or timed out after ${TIMEOUT}s (log: $LOGS/$role.log)"; }
}

# Wait until the raylet of a role runs and Ray reports its node alive.
wait_ray_node() {
    local role=$1 label=$2 id
    id=$(raylet_node_id "$role")
    [[ -n $id ]] || { tail -n 30 "$LOGS/$role.log" >&2; die "ray start ($role) returned but no raylet of the $label runs"; }
    wait_node "$id" "$label"
}

start_ray_head() {
    local started=$SECONDS tmp
    tmp=$(ray_tmp)
    mkdir -p "$RAY_HOME" "$tmp"
    if [[ ! -s $TOKEN_FILE ]]; then
        (umask 077 && "$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))' > "$TOKEN_FILE")
    fi
    ray_env
    if head_running; then
        log "Ray head already running on 127.0.0.1:$RAY_PORT"
    else
        log "starting Ray head on 127.0.0.1:$RAY_PORT ($HEAD_CPUS CPU, temp dir $tmp)"
        ray_start ray-head "$tmp" --head --port "$RAY_PORT" --num-cpus "$HEAD_CPUS" --include-dashboard=false
    fi
    wait_ray_node ray-head "head node"
    log "Ray head up ($((SECONDS - started))s)"
}

start_ray_worker() {
    local started=$SECONDS tmp
    tmp=$(ray_tmp)
    ray_env
    head_running || die "the Ray head is not running: scripts/cluster.sh up"
    if [[ -n $(raylet_node_id ray-worker) ]]; then
        log "Ray worker node already running"
        wait_node "$(raylet_node_id ray-worker)" "worker node"
        return 0
    fi
    # What a dead worker node left behind (its raylet was killed): log monitor, agents.
    local left
    left=$(marked_pids ray-worker)
    if [[ -n $left ]]; then
        log "stopping what is left of a dead Ray worker node: $(echo $left)"
        # shellcheck disable=SC2086
        stop_pids 5 $left
    fi
    log "starting a Ray worker node ($WORKER_CPUS CPU) joining 127.0.0.1:$RAY_PORT"
    ray_start ray-worker "$tmp" --address "127.0.0.1:$RAY_PORT" --num-cpus "$WORKER_CPUS"
    wait_ray_node ray-worker "worker node"
    log "Ray worker node up ($((SECONDS - started))s)"
}

stop_ray() {
    local pids
    # The worker node first (its processes follow its raylet), then the head.
    # A short grace: the GCS and the autoscaler monitor ignore SIGTERM for 15 s and more, and
    # nothing of a test cluster needs a graceful end.
    pids=$(marked_pids ray-worker || true)
    if [[ -n $pids ]]; then
        log "stopping the Ray worker node ($(wc -w <<< "$pids") processes)"
        # shellcheck disable=SC2086
        stop_pids 5 $pids
    fi
    pids=$(marked_pids ray-head || true)
    if [[ -n $pids ]]; then
        log "stopping the Ray head ($(wc -w <<< "$pids") processes)"
        # shellcheck disable=SC2086
        stop_pids 5 $pids
    fi
}

# -- commands -------------------------------------------------------------------------------------

print_env() {
    ray_env
    cat <<EOF
export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT
export MLFLOW_TRACKING_USERNAME=$MLFLOW_USER
export MLFLOW_TRACKING_PASSWORD=$(mlflow_password)
export RAY_ADDRESS=127.0.0.1:$RAY_PORT
export RAY_AUTH_MODE=$RAY_AUTH_MODE
export RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH
export MLFLOW_HTTP_REQUEST_MAX_RETRIES=$MLFLOW_HTTP_REQUEST_MAX_RETRIES
export MLFLOW_HTTP_REQUEST_TIMEOUT=$MLFLOW_HTTP_REQUEST_TIMEOUT
export CLUSTER_DIR=$CLUSTER_DIR
EOF
}

cmd_up() {
    local started=$SECONDS
    mkdir -p "$LOGS"
    chmod 755 "$CLUSTER_DIR" "$LOGS"
    [[ -x $VENV/bin/ray ]] || die "no $VENV/bin/ray: create the venv (make venv) or set VENV"
    cat > "$SETTINGS" <<EOF
SAVED_PG_PORT=$PG_PORT
SAVED_MLFLOW_PORT=$MLFLOW_PORT
SAVED_RAY_PORT=$RAY_PORT
SAVED_HEAD_CPUS=$HEAD_CPUS
SAVED_WORKER_CPUS=$WORKER_CPUS
SAVED_OBJECT_STORE_MB=$OBJECT_STORE_MB
EOF
    start_postgres
    launch_mlflow
    start_ray_head
    start_ray_worker
    wait_mlflow
    log "cluster up in $((SECONDS - started))s; state in $CLUSTER_DIR. Use it with:"
    log '  eval "$(scripts/cluster.sh env)"'
}

cmd_down() {
    stop_ray
    stop_mlflow
    stop_postgres
    local left
    left=$(marked_pids || true)
    if [[ -n $left ]]; then
        log "stopping leftover processes: $(echo $left)"
        # shellcheck disable=SC2086
        stop_pids 10 $left
    fi
    log "cluster down"
}

cmd_purge() {
    cmd_down
    local data tmp
    data=$(cat "$CLUSTER_DIR/pg_data" 2>/dev/null || true)
    tmp=$(cat "$CLUSTER_DIR/ray_tmp" 2>/dev/null || true)
    # Folders that had to live outside the state folder (see pg_data and ray_tmp).
    if [[ -n $data && $data != "$CLUSTER_DIR"/* ]]; then rm -rf "$data" "$data.log"; fi
    if [[ -n $tmp && $tmp != "$CLUSTER_DIR"/* ]]; then rm -rf "$tmp"; fi
    rm -rf "$CLUSTER_DIR"
    log "removed $CLUSTER_DIR"
}

cmd_status() {
    local data
    data=$( [[ -f $CLUSTER_DIR/pg_data ]] && cat "$CLUSTER_DIR/pg_data" || echo "$CLUSTER_DIR/pg")
    if [[ -n $(pg_bin) ]] && pg_ready; then echo "postgres  up    127.0.0.1:$PG_PORT ($data)"; else echo "postgres  down"; fi
    if mlflow_healthy; then echo "mlflow    up    http://127.0.0.1:$MLFLOW_PORT"; else echo "mlflow    down"; fi
    echo "ray       $(ray_nodes) alive node(s) at 127.0.0.1:$RAY_PORT"
}

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    env) print_env ;;
    status) cmd_status ;;
    worker) mkdir -p "$LOGS"; start_ray_worker ;;
    purge) cmd_purge ;;
    stop)
        case ${2:-} in
            mlflow) stop_mlflow ;;
            postgres) stop_postgres ;;
            ray) stop_ray ;;
            *) die "stop what? mlflow, postgres or ray" ;;
        esac
        ;;
    *)
        sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
