#!/bin/sh
# Makes sure Debian's PgBouncer is at /usr/sbin/pgbouncer, for `make bench` (scenario 14
# starts its own pgbouncer in transaction mode in front of PostgreSQL). The tests do not
# need it. Idempotent: does nothing when PgBouncer is already there. Needs root to install.
set -eu

PGBOUNCER=/usr/sbin/pgbouncer

if [ -x "$PGBOUNCER" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -n "$0" "$@"
    fi
    echo "ensure-pgbouncer: $PGBOUNCER is missing and installing it needs root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The package's own service is not used (and is not started where there is no init).
apt-get install -y -qq pgbouncer >/dev/null

if [ ! -x "$PGBOUNCER" ]; then
    echo "ensure-pgbouncer: apt installed pgbouncer but $PGBOUNCER is still missing" >&2
    exit 1
fi
echo "ensure-pgbouncer: installed $("$PGBOUNCER" --version 2>/dev/null | head -n 1)"
