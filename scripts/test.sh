#!/usr/bin/env bash
# Runs every test on a fresh machine: the Swift suites (unit tests, and end-to-end tests that
# start real aspire-server and boot processes on 127.0.0.x) and the Python grpcio wire test.
# Some tests need root (running commands as other users, editing /etc/hosts); as another user
# they are skipped with the reason printed.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Python packages for the wire test (grpcio, grpcio-tools, pytest)"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r Tests/wire/requirements.txt

echo "== Build (debug, with tests)"
swift build --build-tests

echo "== Swift tests"
swift test --skip-build

echo "== Wire test: Python grpcio client against a real server"
ASPIRE_BIN_DIR="$(swift build --show-bin-path)" python3 -m pytest -q Tests/wire
