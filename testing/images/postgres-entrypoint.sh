#!/bin/sh
# Test image entrypoint: like the official image, initialise an empty data
# directory from POSTGRES_USER / POSTGRES_PASSWORD(_FILE) / POSTGRES_DB,
# then run the server in the foreground as postgres, on its socket only.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    password="${POSTGRES_PASSWORD:-}"
    if [ -z "$password" ] && [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        password=$(cat "$POSTGRES_PASSWORD_FILE")
    fi
    pwfile=$(mktemp)
    printf '%s\n' "$password" > "$pwfile"
    chown postgres "$pwfile"
    as_postgres initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    if [ "$POSTGRES_DB" != "postgres" ]; then
        # The temporary server listens on a private socket: clients waiting
        # for the real one must not mistake it for that.
        init_socket=$(mktemp -d)
        chown postgres "$init_socket"
        as_postgres pg_ctl -D "$PGDATA" -w start \
            -o "-c listen_addresses='' -c unix_socket_directories=$init_socket" >/dev/null
        as_postgres createdb -h "$init_socket" -U "$POSTGRES_USER" "$POSTGRES_DB"
        as_postgres pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
        rm -rf "$init_socket"
    fi
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \
    postgres -D "$PGDATA" -c listen_addresses='' "$@"
