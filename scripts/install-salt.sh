#!/usr/bin/env bash
# Salt 3007.8 from PyPI in a virtualenv, for the P2 peer benchmark (aspire-bench salt).
# Its wheel names none of its dependencies, so they are named here (from Salt's
# requirements/base.txt, zeromq.txt and crypto.txt). Prints the bin directory.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.build/peers/salt}"
if [ ! -x "$venv/bin/salt-master" ]; then
    python3 -m venv "$venv" >&2 || {
        [ "$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$venv" >&2
    }
    "$venv/bin/pip" install -q --disable-pip-version-check \
        salt==3007.8 Jinja2 jmespath "msgpack>=1.0.0" PyYAML MarkupSafe requests distro psutil packaging looseversion \
        "tornado>=6.3.3" aiohttp croniter setproctitle python-dateutil pyzmq pycryptodomex cryptography >&2
fi
"$venv/bin/salt" --version >&2
echo "$(cd "$venv/bin" && pwd)"
