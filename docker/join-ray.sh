#!/usr/bin/env bash
# Run a Ray driver inside the compose network: `docker/join-ray.sh sweeper run FILE --address HOST:PORT`.
#
# A driver started with ray.init(address=...) needs a Ray node on its own machine (it talks to the
# local raylet), so this container first joins the cluster as a node with no CPUs (no trial is
# scheduled here), runs the command, then leaves the cluster and exits with the command's status.
set -uo pipefail
address=${RAY_ADDRESS:?RAY_ADDRESS must name the Ray head, e.g. ray-head:6379}
# `ray start` gives up when its raylet has not registered within 30 s (fixed in Ray), which a busy
# machine can exceed: a few attempts (RAY_JOIN_ATTEMPTS, default 3), each bounded by RAY_JOIN_TIMEOUT.
attempt=1
until timeout "${RAY_JOIN_TIMEOUT:-120}" ray start --address="$address" --num-cpus=0 --disable-usage-stats; do
    ray stop --force >/dev/null 2>&1 || true
    if ((attempt >= ${RAY_JOIN_ATTEMPTS:-3})); then
        echo "join-ray: could not join the Ray cluster at $address ($attempt attempts)" >&2
        exit 1
    fi
    attempt=$((attempt + 1))
    echo "join-ray: attempt $attempt to join $address" >&2
done
"$@"
status=$?
ray stop --force >/dev/null 2>&1 || true
exit $status
