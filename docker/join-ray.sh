#!/usr/bin/env bash
# Run a Ray driver inside the compose network: `docker/join-ray.sh sweeper run FILE --address HOST:PORT`.
#
# A driver started with ray.init(address=...) needs a Ray node on its own machine (it talks to the
# local raylet), so this container first joins the cluster as a node with no CPUs (no trial is
# scheduled here), runs the command, then leaves the cluster and exits with the command's status.
set -uo pipefail
address=${RAY_ADDRESS:?RAY_ADDRESS must name the Ray head, e.g. ray-head:6379}
timeout "${RAY_JOIN_TIMEOUT:-120}" ray start --address="$address" --num-cpus=0 --disable-usage-stats \
    || { echo "join-ray: could not join the Ray cluster at $address" >&2; exit 1; }
"$@"
status=$?
ray stop --force >/dev/null 2>&1 || true
exit $status
