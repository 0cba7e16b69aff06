#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: `start` prints its URL, `stop` ends it.
# PostgreSQL refuses to run as root, so as root the cluster runs as `postgres`.
set -euo pipefail
action=${1:-start}
# One cluster per checkout, so two checkouts testing at once do not share one.
checkout_id=$(cd "$(dirname "$0")/.." && pwd | cksum | cut -d' ' -f1)
dir=${PG_TEST_DIR:-/tmp/leadx-test-pg-$checkout_id}
port=${PG_TEST_PORT:-$((50000 + checkout_id % 5000))}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bin" ]; then
  echo "PostgreSQL is not installed (apt-get install postgresql)" >&2
  exit 1
fi
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
url="postgresql+psycopg://leadx@127.0.0.1:${port}/leadx_test"

case "$action" in
  start)
    if [ ! -f "$dir/PG_VERSION" ]; then
      mkdir -p "$dir"
      [ "$(id -u)" = 0 ] && chown postgres: "$dir"
      as_owner "$bin/initdb" -D "$dir" -U leadx -A trust --no-sync >/dev/null
    fi
    if ! as_owner "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
      # Durability is not what the tests check: trade it for speed.
      as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -o \
        "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null
    fi
    "$bin/psql" -h 127.0.0.1 -p "$port" -U leadx -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='leadx_test'" | grep -q 1 ||
      "$bin/createdb" -h 127.0.0.1 -p "$port" -U leadx leadx_test
    echo "$url"
    ;;
  stop)
    as_owner "$bin/pg_ctl" -D "$dir" -m fast stop >/dev/null 2>&1 || true
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
