#!/usr/bin/env bash
# Runs Aspire on one machine with its embedded defaults: a server node on 127.0.0.1:8443 (its
# own CA, tokens and state in .aspire/server) and a BootAgent connected to it over TLS (state in
# .aspire/agent). Prints how to drive it with aspirectl, runs one command to show it works,
# then keeps both running until Ctrl-C.
#
#   ASPIRE_HOME   where state goes (default: .aspire in the repository)
#   ASPIRE_PORT   gRPC port (default 8443)
#   ASPIRE_HTTP_PORT   REST gateway port (default 8180)
set -euo pipefail
cd "$(dirname "$0")/.."

home="${ASPIRE_HOME:-$PWD/.aspire}"
port="${ASPIRE_PORT:-8443}"
http_port="${ASPIRE_HTTP_PORT:-8180}"
mkdir -p "$home"

echo "== Building (debug)"
swift build
bin="$(swift build --show-bin-path)"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

rm -f "$home/server/grpc.addr"
"$bin/aspire-server" --data-dir "$home/server" --listen "127.0.0.1:$port" --http-listen "127.0.0.1:$http_port" >>"$home/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    [ -f "$home/server/grpc.addr" ] && break
    kill -0 "${pids[0]}" 2>/dev/null || { cat "$home/server.log"; exit 1; }
    sleep 0.1
done

"$bin/boot" -f --server "localhost:$port" --ca "$home/server/tls/ca.pem" \
    --token-file "$home/server/enroll.token" --data-dir "$home/agent" \
    -L "$home/agent.log" -P "$home/agent.pid" --tag env=local --start-delay 0 &
pids+=($!)

export ASPIRE_SERVER="127.0.0.1:$port" ASPIRE_SERVER_DATA="$home/server"
for _ in $(seq 1 100); do
    [ -f "$home/agent/agent.sn" ] && "$bin/aspirectl" agents >/dev/null 2>&1 && break
    sleep 0.1
done
sn="$(cat "$home/agent/agent.sn")"

cat <<EOT

Aspire is running: server log $home/server.log, agent log $home/agent.log.
Web console: http://127.0.0.1:$http_port/ (sign in with the admin token: cat $home/server/admin.token).
In another shell:

  export ASPIRE_SERVER=$ASPIRE_SERVER ASPIRE_SERVER_DATA=$ASPIRE_SERVER_DATA
  $bin/aspirectl agents
  $bin/aspirectl run --agent $sn -- 'uname -a; uptime'
  $bin/aspirectl info --agent $sn users -U root
  $bin/aspirectl hosts
  curl -s -H "Authorization: Bearer \$(cat $home/server/admin.token)" http://127.0.0.1:$http_port/api/v1/server/dashboard

First command, run now:
\$ aspirectl run --agent $sn -- 'echo hello from \$(hostname); id -un'
EOT
"$bin/aspirectl" run --agent "$sn" -- 'echo hello from $(hostname); id -un' || true
echo
echo "\$ curl -s -H 'Authorization: Bearer ...' http://127.0.0.1:$http_port/api/v1/server/dashboard"
curl -s -H "Authorization: Bearer $(cat "$home/server/admin.token")" "http://127.0.0.1:$http_port/api/v1/server/dashboard" || true
echo
echo
echo "Ctrl-C stops the server and the agent."
wait
