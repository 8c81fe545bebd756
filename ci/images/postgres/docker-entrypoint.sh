#!/bin/bash
# Entrypoint of the stand-in postgres image (ci/images/postgres/Containerfile): on the first start,
# initdb in PGDATA with POSTGRES_USER as superuser and POSTGRES_PASSWORD (from a private file, never a
# command line), scram-sha-256 for network clients, trust on the container's own socket (as the
# official image does), listening on all the container's interfaces, and POSTGRES_DB created.
# Then PostgreSQL runs as the postgres user, in the foreground, as PID 1.
set -euo pipefail

if [[ ${1:-} == postgres && $(id -u) == 0 ]]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [[ ${1:-} == postgres && ! -s $PGDATA/PG_VERSION ]]; then
    : "${POSTGRES_PASSWORD:?the stand-in postgres image needs POSTGRES_PASSWORD}"
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
        -E UTF8 --no-instructions > /dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    if [[ $db != postgres ]]; then
        printf 'CREATE DATABASE "%s";\n' "$db" | postgres --single -j -D "$PGDATA" postgres > /dev/null
    fi
    echo "stand-in postgres: initialised $PGDATA (PostgreSQL $(postgres --version | awk '{print $3}'), user $user, database $db)"
fi

exec "$@"
