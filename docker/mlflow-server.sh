#!/usr/bin/env bash
# The MLflow tracking server of the cluster, behind MLflow's basic-auth login: one start command for
# docker-compose.yml (the `mlflow` service) and scripts/cluster.sh (plain processes).
#
#   docker/mlflow-server.sh --backend-store-uri URI --artifacts-destination DIR --host H --port P \
#       --allowed-hosts HOST:PORT,...        # any other `mlflow server` option passes through
#
# Environment:
#   MLFLOW_AUTH_ADMIN_PASSWORD   required, at least 12 characters: the admin's password, read by MLflow
#                                when it creates the admin user in an empty user store (MLflow >= 3.16.1
#                                has no default and refuses to start without it). Later starts keep the
#                                stored password; change it with MLflow's update-password API.
#   MLFLOW_AUTH_ADMIN_USERNAME   the admin's name (default: admin)
#   MLFLOW_AUTH_DIR              folder of the user store (basic_auth.db) and its config (default: ./auth)
#   MLFLOW_AUTH_DEFAULT_PERMISSION  what a logged-in user may do on experiments of others (default READ;
#                                anonymous requests always get 401)
#   MLFLOW_FLASK_SERVER_SECRET_KEY  the key of the login forms' CSRF tokens (the auth app refuses to start
#                                without one); default: random, generated once into MLFLOW_AUTH_DIR
#   MLFLOW (default: mlflow)     the mlflow executable
#   PGPASSWORD                   read by libpq for a PostgreSQL backend store: the password never goes
#                                into the store URI, hence never onto a command line
#
# Lean server: one worker and no job execution (2 processes and ~0.5 GB instead of 10-15 and 2-3 GB);
# artifacts are served through the server (clients need no access to the artifact folder).
set -euo pipefail

die() { printf 'mlflow-server: %s\n' "$*" >&2; exit 2; }

[[ -n ${MLFLOW_AUTH_ADMIN_PASSWORD:-} ]] \
    || die "MLFLOW_AUTH_ADMIN_PASSWORD is not set: the MLflow admin password has no default (docker-compose.yml: MLFLOW_TRACKING_PASSWORD in .env)"
((${#MLFLOW_AUTH_ADMIN_PASSWORD} >= 12)) || die "MLFLOW_AUTH_ADMIN_PASSWORD must have at least 12 characters"
export MLFLOW_AUTH_ADMIN_USERNAME=${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
auth_dir=${MLFLOW_AUTH_DIR:-auth}
mkdir -p "$auth_dir"
auth_dir=$(cd "$auth_dir" && pwd)

if [[ -z ${MLFLOW_FLASK_SERVER_SECRET_KEY:-} ]]; then
    if [[ ! -s $auth_dir/secret_key ]]; then
        (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$auth_dir/secret_key")
    fi
    MLFLOW_FLASK_SERVER_SECRET_KEY=$(cat "$auth_dir/secret_key")
    export MLFLOW_FLASK_SERVER_SECRET_KEY
fi

# MLflow's auth config (basic_auth.ini format); the password stays in the environment, not in the file.
export MLFLOW_AUTH_CONFIG_PATH=$auth_dir/basic_auth.ini
cat > "$MLFLOW_AUTH_CONFIG_PATH" <<EOF
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = sqlite:///$auth_dir/basic_auth.db
admin_username = $MLFLOW_AUTH_ADMIN_USERNAME
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
# Successful logins are cached for a minute: without it every request runs a PBKDF2 hash (~0.3 s of
# CPU here), which made the driver too slow to keep two nodes busy.
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_SECONDS:-60}
EOF

export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
exec "${MLFLOW:-mlflow}" server --app-name basic-auth --serve-artifacts --workers 1 "$@"
