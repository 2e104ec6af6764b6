#!/usr/bin/env bash
# Runs every test on a fresh machine: the Swift suites (unit tests, and end-to-end tests that
# start real aspire-server and boot processes on 127.0.0.x), the Python grpcio wire test, the web
# console in headless chromium, the packages (static binaries with the toolchain hidden; .deb
# installed, upgraded and removed on this machine, as root), and every benchmark in --quick mode
# (so none can rot; their figures are printed, never asserted).
# Some tests need root (running commands as other users, editing /etc/hosts, installing and
# starting PostgreSQL for the store suite); as another user they are skipped with the reason
# printed, or point ASPIRE_TEST_POSTGRES_URL at a server whose user may create databases.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Python packages for the wire and browser tests (grpcio, grpcio-tools, pytest, selenium)"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r Tests/wire/requirements.txt -r Tests/browser/requirements.txt

echo "== PostgreSQL for the store conformance suite"
if [ -z "${ASPIRE_TEST_POSTGRES_URL:-}" ]; then
    if [ "$(id -u)" = 0 ]; then
        ASPIRE_TEST_POSTGRES_URL="$(scripts/postgres-for-tests.sh)"
        export ASPIRE_TEST_POSTGRES_URL
    elif [ -n "${CI:-}" ]; then
        echo "CI needs PostgreSQL: run as root or set ASPIRE_TEST_POSTGRES_URL" >&2
        exit 1
    else
        echo "not root and ASPIRE_TEST_POSTGRES_URL unset: the store suite runs on SQLite only" >&2
    fi
fi
echo "store tests on PostgreSQL: ${ASPIRE_TEST_POSTGRES_URL:-no}"

# The time zone database schedules are read in (the agent reads the host's, as cron does).
if [ ! -f /usr/share/zoneinfo/tzdata.zi ] && [ "$(id -u)" = 0 ]; then
    echo "== tzdata: the time zone database of the schedule tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tzdata >/dev/null
fi

# iproute2's `ip`: the silent-peer test and P4' cut a host off with blackhole routes.
if ! command -v ip >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "== iproute2 for the partition of the silent-peer test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
fi

# The benchmarks' peers and load generators: sshd (P3) and h2load (P6).
if [ "$(id -u)" = 0 ] && { [ ! -x /usr/sbin/sshd ] || ! command -v h2load >/dev/null 2>&1; }; then
    echo "== openssh-server and nghttp2-client for the benchmarks' ssh and h2load figures"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client nghttp2-client >/dev/null \
        || echo "openssh-server or nghttp2-client did not install: the benchmarks skip those figures" >&2
fi

# The browser test's browser: Debian's chromium and its driver.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        echo "== chromium and chromium-driver for the web console's browser test"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    elif [ -n "${CI:-}" ]; then
        echo "CI needs chromium and chromium-driver for the browser test: run as root" >&2
        exit 1
    fi
fi

echo "== Build (debug, with tests)"
swift build --build-tests

echo "== Swift tests"
# A test that hangs must fail the run with its name, not eat CI's 90 minutes: past the limit
# the whole run is killed (SIGKILL: the test process blocks SIGTERM) and the tests that started
# and never finished are listed.
log="$(mktemp)"
status=0
timeout --kill-after=20s "${ASPIRE_TEST_TIMEOUT:-1200}" swift test --skip-build 2>&1 | tee "$log" || status=$?
if [ "$status" -ne 0 ]; then
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        echo "== swift test did not finish within ${ASPIRE_TEST_TIMEOUT:-1200} s; started and never finished:" >&2
        sed -n 's/.*Test \("[^"]*"\).* started\..*/\1/p' "$log" | sort > "$log.started"
        sed -n 's/.*Test \("[^"]*"\).* \(passed\|failed\|skipped\).*/\1/p' "$log" | sort -u > "$log.ended"
        comm -23 "$log.started" "$log.ended" >&2
    fi
    exit "$status"
fi

echo "== Wire test: Python grpcio client against a real server"
ASPIRE_BIN_DIR="$(swift build --show-bin-path)" python3 -m pytest -q Tests/wire

echo "== Browser test: the web console in headless chromium (selenium) against a real node and agents"
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    ASPIRE_SCREENSHOTS="${ASPIRE_SCREENSHOTS:-$(pwd)/.build/screenshots}"
    export ASPIRE_SCREENSHOTS
    ASPIRE_BIN_DIR="$(swift build --show-bin-path)" python3 -m pytest -q Tests/browser
    echo "screenshots of each tab (light and dark, desktop and narrow): $ASPIRE_SCREENSHOTS"
    ls "$ASPIRE_SCREENSHOTS"
else
    echo "chromium or chromedriver missing: the browser test is skipped (CI installs them)" >&2
fi

echo "== Packages: static binaries without the toolchain; .deb installed, upgraded, removed; units verified; .rpm contents"
# scripts/package.sh --debug (its own build folder, .build-package: the static runtime's objects do
# not mix with the tests'), then installs them on this machine and removes them again.
if [ "$(id -u)" = 0 ]; then
    if ! command -v rpmbuild >/dev/null 2>&1 || ! command -v cpio >/dev/null 2>&1 || ! command -v systemd-analyze >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rpm cpio systemd >/dev/null
    fi
    python3 -m pytest -q Tests/package
elif [ -n "${CI:-}" ]; then
    echo "CI needs root for the package test (dpkg -i)" >&2
    exit 1
else
    echo "not root: the package test is skipped (it installs packages)" >&2
fi

echo "== Benchmarks, --quick (debug build: the figures only show they still run)"
# Salt from PyPI for the P2 peer; without it that half of the benchmark says skipped.
ASPIRE_BENCH_SALT="$(scripts/install-salt.sh || true)"
export ASPIRE_BENCH_SALT
"$(swift build --show-bin-path)/aspire-bench" all --quick
