#!/bin/bash
# Starts PostgreSQL like the official image's entrypoint does, for the variables that matter:
#   POSTGRES_PASSWORD (required on first start), POSTGRES_USER (default postgres),
#   POSTGRES_DB (default POSTGRES_USER), POSTGRES_INITDB_ARGS, PGDATA,
#   scripts *.sh / *.sql in /docker-entrypoint-initdb.d run once after initdb.
# On a data directory that already holds a cluster nothing is initialised again.
set -Eeuo pipefail

log() { echo "entrypoint: $*" >&2; }

# `docker run IMAGE -c key=value` means: postgres -c key=value
if [ "${1:0:1}" = "-" ]; then
  set -- postgres "$@"
fi

if [ "$1" != "postgres" ]; then
  exec "$@"
fi

if [ "$(id -u)" = "0" ]; then
  install -d -o postgres -g postgres -m 0700 "$PGDATA"
  install -d -o postgres -g postgres -m 2775 /var/run/postgresql
  # Take over a data directory made by another user id (e.g. a restored volume).
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
export POSTGRES_USER POSTGRES_DB

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    log "POSTGRES_PASSWORD is not set: the database has no password and cannot be initialised."
    log "Set POSTGRES_PASSWORD (e.g. in .env) and start again."
    exit 1
  fi
  log "initialising a new cluster in $PGDATA for user $POSTGRES_USER, database $POSTGRES_DB"
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of options
  initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" \
    --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 \
    ${POSTGRES_INITDB_ARGS:-} >/dev/null
  {
    echo
    echo "# Added by the entrypoint: clients on other containers log in with a password."
    echo "host all all all scram-sha-256"
  } >> "$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"

  # A server on the socket only while the database is created, so clients (and health checks
  # over TCP) see nothing until it is ready.
  pg_ctl --pgdata="$PGDATA" --wait --silent -o "-c listen_addresses=''" start
  if [ "$POSTGRES_DB" != "postgres" ]; then
    psql -v ON_ERROR_STOP=1 --quiet --no-psqlrc --username="$POSTGRES_USER" --dbname=postgres \
      --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    case "$f" in
      *.sh) log "running $f"; . "$f" ;;
      *.sql) log "running $f"
        psql -v ON_ERROR_STOP=1 --quiet --no-psqlrc --username="$POSTGRES_USER" --dbname="$POSTGRES_DB" -f "$f" ;;
      *) log "ignoring $f" ;;
    esac
  done
  pg_ctl --pgdata="$PGDATA" --wait --silent -m fast stop
  log "initialisation done"
fi

exec "$@"
