#!/usr/bin/env bash
# Install the system tools the test suite and benchmarks need (idempotent).
#
#   bash scripts/install-system-deps.sh          # prometheus + promtool, amtool (observability tests), redis-server,
#                                                # chromium (the console's browser tests drive Debian's Chromium)
#   bash scripts/install-system-deps.sh bench    # ... and wrk, valgrind (load tests, instruction counts)
#
# Run by `make test` / `make bench` before anything else. Works on a fresh Debian/Ubuntu image with no
# apt lists yet. Installs the Debian `prometheus` package only for its binaries: the system service is
# never started (policy-rc.d denies it while we install, and we stop/disable it if a unit got enabled).
set -euo pipefail

want_bench=0
for arg in "$@"; do
    case "$arg" in
        bench) want_bench=1 ;;
        *) echo "usage: $0 [bench]" >&2; exit 2 ;;
    esac
done

packages=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || packages+=(prometheus)
command -v amtool >/dev/null 2>&1 || packages+=(prometheus-alertmanager)  # amtool checks config/alertmanager.yml
# tests/admission/test_redis_restart.py stops and restarts a private redis-server of its own
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || packages+=(redis-server)
# tests/http/ui: Playwright launches this binary (Playwright's own browser download is not used)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || packages+=(chromium)
if [ "$want_bench" = 1 ]; then
    command -v wrk >/dev/null 2>&1 || packages+=(wrk)
    command -v valgrind >/dev/null 2>&1 || packages+=(valgrind)  # loadtests/instructions.py
fi

if [ "${#packages[@]}" -eq 0 ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: apt-get not found; install ${packages[*]} yourself" >&2
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-system-deps: not root and no sudo; install ${packages[*]} yourself" >&2
        exit 0
    fi
fi

echo "install-system-deps: installing ${packages[*]}" >&2

# Keep the package's maintainer scripts from starting the prometheus daemon (invoke-rc.d honours this).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" = 1 ]; then
        $SUDO rm -f "$policy"
    fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
if ! { $SUDO apt-get update -qq \
        && $SUDO env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${packages[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "install-system-deps: apt-get failed" >&2
    exit 1
fi
rm -f "$log"

# If systemd is running and the unit got enabled/started anyway, stop it: tests start their own instance.
for unit in prometheus redis-server; do
    if [[ " ${packages[*]} " == *" $unit "* ]] && command -v systemctl >/dev/null 2>&1 \
            && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now "$unit" >/dev/null 2>&1 || true
    fi
done
if [[ " ${packages[*]} " == *" prometheus-alertmanager "* ]] && command -v systemctl >/dev/null 2>&1 \
        && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus-alertmanager >/dev/null 2>&1 || true
fi

command -v promtool >/dev/null 2>&1 || { echo "install-system-deps: promtool still missing" >&2; exit 1; }
command -v amtool >/dev/null 2>&1 || { echo "install-system-deps: amtool still missing" >&2; exit 1; }
command -v chromium >/dev/null 2>&1 || { echo "install-system-deps: chromium still missing" >&2; exit 1; }
