#!/usr/bin/env bash
# Named users on the wire (issue 12 item 5): tcpdump (Debian's `tcpdump`, root) captures everything
# on lo to and from a `plait server --users` while
#  - a client named by a distinctive user name makes a session and fetches, through the tunnel,
#    the server's own /stats (which lists that name: so the name does cross inside the tunnel),
#  - a client with that name and a wrong secret, and one with an unknown distinctive name, are refused,
#  - the user is removed and the server gets SIGHUP, so its session ends with "access revoked";
# then the capture must hold the plait traffic (HELLOs, records) and never the user names, in
# any of the forms a dissector might show (raw UTF-8, UTF-16LE, base64 of the name).
#
#   bash test/system/users-wire.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "[users-wire] FAIL: $*" >&2; exit 1; }
command -v tcpdump >/dev/null || fail "tcpdump missing (apt-get install tcpdump)"
command -v curl >/dev/null || fail "curl missing"
[ "$(id -u)" = 0 ] || fail "needs root (tcpdump on lo)"

plait="node packages/cli/bin/plait.js"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

name=zebrahousehold7q
stranger=okapifamily3x
ids=$($plait keygen --identity)
idkey=$(sed -n 's/^identity-key: //p' <<<"$ids")
skey=$(sed -n 's/^server-key: //p' <<<"$ids")
secret=$($plait keygen)
other=$($plait keygen)
write_users() {
  { echo "identity-key: $idkey"; echo "users:"
    [ "$1" = with ] && printf '  - name: %s\n    secret: %s\n' "$name" "$secret"
    printf '  - name: spare\n    secret: %s\n' "$other"; } >"$tmp/users.yaml"
  chmod 600 "$tmp/users.yaml"
}
write_users with

$plait server --listen 127.0.0.1:0 --users "$tmp/users.yaml" --allow-private --stats 127.0.0.1:0 >"$tmp/server.log" 2>&1 &
server_pid=$!; pids+=("$server_pid")
for _ in $(seq 100); do grep -q 'stats at /stats' "$tmp/server.log" && break; sleep 0.1; done
port=$(grep -o '"listen":"127.0.0.1:[0-9]*"' "$tmp/server.log" | grep -o '[0-9]*"$' | tr -d '"')
stats=$(grep -o '"stats":"127.0.0.1:[0-9]*"' "$tmp/server.log" | grep -o '[0-9]*"$' | tr -d '"')
[ -n "$port" ] && [ -n "$stats" ] || fail "server did not start:"$'\n'"$(cat "$tmp/server.log")"

tcpdump -i lo -U -s 0 -w "$tmp/wire.pcap" "tcp port $port" 2>"$tmp/tcpdump.err" &
dump_pid=$!; pids+=("$dump_pid")
for _ in $(seq 50); do grep -q 'listening on' "$tmp/tcpdump.err" && break; sleep 0.1; done

socks=$((20000 + RANDOM % 20000))
$plait client --server "127.0.0.1:$port" --user "$name" --server-key "$skey" --secret "$secret" --socks "127.0.0.1:$socks" >"$tmp/client.log" 2>&1 &
client_pid=$!; pids+=("$client_pid")
for _ in $(seq 100); do grep -q 'session established' "$tmp/client.log" && break; sleep 0.1; done
grep -q 'session established' "$tmp/client.log" || fail "no session:"$'\n'"$(cat "$tmp/client.log")"
curl -sS --max-time 10 --socks5-hostname "127.0.0.1:$socks" "http://127.0.0.1:$stats/stats" >"$tmp/through.json" || fail "fetch through the tunnel failed"
grep -q "\"$name\"" "$tmp/through.json" || fail "the name did not cross inside the tunnel (so the check below would prove nothing)"

$plait client --server "127.0.0.1:$port" --user "$name" --server-key "$skey" --secret "$other" --socks 127.0.0.1:0 >"$tmp/wrong.log" 2>&1 &
pids+=($!)
$plait client --server "127.0.0.1:$port" --user "$stranger" --server-key "$skey" --secret "$other" --socks 127.0.0.1:0 >"$tmp/stranger.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  c=$(curl -s "http://127.0.0.1:$stats/stats")
  grep -q '"userBadSecret": *[1-9]' <<<"$c" && grep -q '"userUnknown": *[1-9]' <<<"$c" && break
  sleep 0.1
done
grep -q '"userBadSecret": *[1-9]' <<<"$c" && grep -q '"userUnknown": *[1-9]' <<<"$c" || fail "refusals not counted: $c"

write_users without
kill -HUP "$server_pid"
for _ in $(seq 100); do grep -q 'access revoked' "$tmp/client.log" && break; sleep 0.1; done
grep -q 'access revoked' "$tmp/client.log" || fail "the revoked client did not log access revoked:"$'\n'"$(cat "$tmp/client.log")"
sleep 0.5
kill "$dump_pid"; wait "$dump_pid" 2>/dev/null || true

packets=$(tcpdump -r "$tmp/wire.pcap" 2>/dev/null | wc -l)
bytes=$(stat -c %s "$tmp/wire.pcap")
[ "$packets" -ge 20 ] || fail "only $packets packets captured"
# Control: the cleartext REJECT of the refused clients is there, so the capture does hold what a
# passive observer sees (the check below would otherwise pass on an empty or encrypted-only capture).
grep -aq 'wrong user or secret, access revoked' "$tmp/wire.pcap" || fail "the capture lacks the cleartext REJECT: not the plait traffic?"
for n in "$name" "$stranger"; do
  grep -aq "$n" "$tmp/wire.pcap" && fail "the capture contains the user name $n"
  u16=$(printf '%s' "$n" | sed 's/./&\\x00/g')
  grep -aqP "$u16" "$tmp/wire.pcap" && fail "the capture contains $n as UTF-16"
  b64=$(printf '%s' "$n" | base64 | tr -d '=' | cut -c1-12)
  grep -aqF "$b64" "$tmp/wire.pcap" && fail "the capture contains $n in base64"
done
echo "[users-wire] ok: $packets packets ($bytes bytes) on port $port, with a session, a fetch that carried the name inside the tunnel, two refused clients and a revocation; no user name in any form"
