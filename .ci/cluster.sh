#!/usr/bin/env bash
# CI: the cluster tests against PostgreSQL + an MLflow server + a Ray head and a Ray worker node,
# started as plain processes by scripts/cluster.sh (no Docker), then stopped whatever happens.
# Called by .ci/run after the unit tests; runnable alone: bash .ci/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export CLUSTER_DIR=${CLUSTER_DIR:-$PWD/.cluster}
export VENV=${VENV:-.venv}
started=$(date +%s)

cleanup() {
    local status=$?
    echo "== cluster down"
    bash scripts/cluster.sh down || echo "warning: scripts/cluster.sh down failed" >&2
    if ((status != 0)) && [[ -d $CLUSTER_DIR/logs ]]; then
        echo "== last lines of the cluster's logs ($CLUSTER_DIR/logs)"
        for log in "$CLUSTER_DIR"/logs/*.log; do
            echo "--- $log"
            tail -n 15 "$log" || true
        done
    fi
    echo "== cluster tests: $(( $(date +%s) - started ))s in all, exit $status"
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== cluster up"
up_started=$(date +%s)
bash scripts/cluster.sh up
echo "== cluster up in $(( $(date +%s) - up_started ))s"

eval "$(bash scripts/cluster.sh env)"
export SWEEPER_CLUSTER=1
echo "== cluster tests (MLFLOW_TRACKING_URI=$MLFLOW_TRACKING_URI RAY_ADDRESS=$RAY_ADDRESS)"
# Bounded: the tests take 4-5 minutes; a hung sweep must not eat CI's time. The fault tests
# print their table (fault, load held, faults survived, metric steps lost, zombie runs) at the end.
timeout "${CLUSTER_TEST_TIMEOUT:-900}" "$VENV/bin/python" -m pytest -q -m cluster tests/cluster/test_cluster.py \
    tests/cluster/test_cluster_faults.py
