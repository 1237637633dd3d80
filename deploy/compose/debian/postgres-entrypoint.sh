#!/bin/sh
# The official image's first start: a cluster owned by POSTGRES_USER with its password, the
# database POSTGRES_DB, password logins from the network.
set -eu
bin=/usr/lib/postgresql/15/bin
data=/var/lib/postgresql/data
user=${POSTGRES_USER:-postgres}
if [ ! -s "$data/PG_VERSION" ]; then
  pass=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}" > "$pass"
  # UTF-8, as the official image: with SQL_ASCII, psycopg hands back text as bytes.
  "$bin/initdb" -D "$data" -U "$user" --pwfile="$pass" -E UTF8 --locale=C.UTF-8 \
    -A scram-sha-256 --auth-local=trust >/dev/null
  rm -f "$pass"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$data/pg_hba.conf"
  "$bin/pg_ctl" -D "$data" -w -o "-c listen_addresses=''" start >/dev/null
  db=${POSTGRES_DB:-$user}
  [ "$db" = postgres ] || "$bin/psql" -U "$user" -d postgres -qc "CREATE DATABASE \"$db\""
  "$bin/pg_ctl" -D "$data" -w stop >/dev/null
fi
exec "$bin/postgres" -D "$data" -c listen_addresses='*'
