#!/usr/bin/env bash
# Installs the PostgreSQL server (14 or newer) that tests/postgres.py starts throwaway clusters
# with: Debian's `postgresql` package, whose binaries live in /usr/lib/postgresql/<version>/bin.
# Idempotent: does nothing when initdb and pg_ctl of a version >= 14 are there already. Needs root
# (or sudo) and apt only when it has to install. The tests never use Debian's own `main` cluster:
# if the install started it, it is stopped again.
set -euo pipefail

MINIMUM=14

# The bin folder of the newest installed server version >= MINIMUM, or nothing.
newest() {
    local bin version
    for bin in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -V -r); do
        version=$(basename "$(dirname "$bin")")
        case "$version" in *[!0-9]*|"") continue ;; esac
        if [ "$version" -ge "$MINIMUM" ] && [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ]; then
            echo "$bin"
            return 0
        fi
    done
    return 1
}

report() { echo "postgres_setup: $("$1/initdb" --version 2>/dev/null | head -n 1) in $1"; }

if bin=$(newest); then
    report "$bin"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "postgres_setup: no PostgreSQL >= $MINIMUM server in /usr/lib/postgresql/*/bin and apt-get not found;" \
         "install Debian's 'postgresql' package (or PostgreSQL $MINIMUM+ server binaries) by hand" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "postgres_setup: must run as root (or with sudo) to apt-get install postgresql" >&2
        exit 1
    fi
fi

LOG=/tmp/postgres_setup.$$.log
install() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql; }

# Try with the package lists as they are; refresh them only when that fails (or there are none).
if ! install >"$LOG" 2>&1; then
    echo "postgres_setup: apt-get update" >&2
    if ! $SUDO apt-get update -q >>"$LOG" 2>&1 || ! install >>"$LOG" 2>&1; then
        tail -n 20 "$LOG" >&2
        rm -f "$LOG"
        echo "postgres_setup: could not install postgresql with apt-get (see above)" >&2
        exit 1
    fi
fi
rm -f "$LOG"

# The package's scripts create a `main` cluster and may start it; the tests start their own
# clusters on free ports, so a server left on 5432 would only cost memory. Failures are ignored:
# there may be no such cluster, or no service manager to ask.
for conf in /etc/postgresql/*/main; do
    [ -d "$conf" ] || continue
    $SUDO pg_ctlcluster "$(basename "$(dirname "$conf")")" main stop >/dev/null 2>&1 || true
done
$SUDO service postgresql stop >/dev/null 2>&1 || true

if ! bin=$(newest); then
    echo "postgres_setup: apt-get installed postgresql but no initdb and pg_ctl of version >= $MINIMUM" \
         "are in /usr/lib/postgresql/*/bin (Debian's release may ship an older server)" >&2
    exit 1
fi
report "$bin"
