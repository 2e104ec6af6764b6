#!/usr/bin/env bash
# Runs every test on a fresh machine: the Swift suites (unit tests, and end-to-end tests that
# start real aspire-server and boot processes on 127.0.0.x) and the Python grpcio wire test.
# Some tests need root (running commands as other users, editing /etc/hosts, installing and
# starting PostgreSQL for the store suite); as another user they are skipped with the reason
# printed, or point ASPIRE_TEST_POSTGRES_URL at a server whose user may create databases.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Python packages for the wire test (grpcio, grpcio-tools, pytest)"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r Tests/wire/requirements.txt

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

echo "== Build (debug, with tests)"
swift build --build-tests

echo "== Swift tests"
swift test --skip-build

echo "== Wire test: Python grpcio client against a real server"
ASPIRE_BIN_DIR="$(swift build --show-bin-path)" python3 -m pytest -q Tests/wire
