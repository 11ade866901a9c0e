#!/bin/sh
# Entry point of aiorch/postgres:local (aiorch.deploy.images.build_postgres_image): the
# official postgres image's contract on Debian's PostgreSQL. On first start,
# POSTGRES_USER (postgres), POSTGRES_PASSWORD and POSTGRES_DB create the cluster in
# PGDATA; then the server runs as the postgres user, listening on every interface with
# password (scram-sha-256) authentication; local socket connections are trusted.
set -eu
bin=$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)
data=${PGDATA:-/var/lib/postgresql/data}
user=${POSTGRES_USER:-postgres}
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$data" /run/postgresql
    chown -R postgres:postgres "$data" /run/postgresql
    chmod 700 "$data"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ ! -s "$data/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
    password_file=$(mktemp)
    printf '%s' "$POSTGRES_PASSWORD" >"$password_file"
    # UTF-8 explicitly: a minimal Debian has no locale, and initdb would pick SQL_ASCII,
    # whose text clients receive as bytes.
    "$bin/initdb" -D "$data" -U "$user" --pwfile="$password_file" --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$password_file"
    echo "listen_addresses = '*'" >>"$data/postgresql.conf"
    echo "host all all all scram-sha-256" >>"$data/pg_hba.conf"
    if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
        "$bin/pg_ctl" -D "$data" -o "-c listen_addresses=''" -w start >/dev/null
        "$bin/createdb" -U "$user" "$POSTGRES_DB"
        "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    fi
fi
exec "$bin/postgres" -D "$data"
