#!/usr/bin/env bash
# Whole-home router mode (issue 10 items 3, 5, 6, 7) in network namespaces, as root:
#
#   LAN host --- router ---- up1 (40 Mbit/s) -- server: plait server, and the "internet"
#   10.61.0.2   10.61.0.1 -- up2 (40 Mbit/s) --  10.63.0.1 (plait), 198.51.100.7 and
#                                               203.0.113.9 (HTTP targets)
#
# The router runs `plait client --via up1 --via up2 --redirect` and the rules printed by
# `plait router-setup`; the LAN host has no proxy settings and no route to the targets but
# the router, which does not forward (ip_forward=0), so only plait can carry its traffic.
#  1. router-setup's nftables file passes `nft -c`; its iptables variant `iptables-restore --test`;
#     the script loads in the router (twice: re-running it replaces, not duplicates);
#  2. from the LAN host, a plain `curl` of 16 MiB from 198.51.100.7 arrives intact through the
#     REDIRECT (SO_ORIGINAL_DST), and both uplinks carry at least 10 % of it (client /stats);
#     the same over IPv6 (1 MiB from 2001:db8:7::7: IP6T_SO_ORIGINAL_DST);
#     a DNS lookup from the LAN host (to the router's port 53, redirected to `plait client --dns`)
#     resolves through the session to the server's --dns-upstream; a SOCKS5 UDP echo (300
#     datagrams) round-trips >= 95 %;
#  3. a connection straight to plait's redirect port is dropped as a loop and counted;
#  4. with `--bypass 203.0.113.9/32 --bypass-device 10.61.0.50 --bypass-via up1`, curl to
#     203.0.113.9, and anything from 10.61.0.50, goes out directly (the target sees the router's
#     up1 address, masqueraded) while the rest is still carried by plait (the target sees the
#     server's side); with `--bypass-domain stream.example` (router-setup and the client), a
#     curl to http://stream.example/ resolves through --dns, the answer waits until the address
#     is in the nftables set, and the connection goes out directly;
#  5. --undo removes the table and the rules;
#  6. the same with TPROXY (`router-setup --tproxy`, `plait client --tproxy`): a curl arrives
#     intact, and --undo cleans up.
# Namespaces are named plh-*-$$ and removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
say() { echo "[router-netns] $*"; }
fail() {
  echo "[router-netns] FAIL: $*" >&2
  for f in "$tmp"/*.log; do [ -s "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
  exit 1
}
[ "$(id -u)" = 0 ] || { echo "[router-netns] needs root (network namespaces)" >&2; exit 1; }
for c in ip nft tc curl iptables-restore sha256sum; do command -v "$c" >/dev/null || { echo "[router-netns] $c missing" >&2; exit 1; }; done

LAN=plh-lan-$$
RT=plh-rt-$$
SRV=plh-srv-$$
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in "$LAN" "$RT" "$SRV"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "/etc/netns/$LAN"
  rm -rf "$tmp"
}
trap cleanup EXIT
plait() { node "$PWD/packages/cli/bin/plait.js" "$@"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ------------------------------------------------------------------ topology
for ns in "$LAN" "$RT" "$SRV"; do ip netns add "$ns"; in_ns "$ns" ip link set lo up; done
ip link add lan netns "$LAN" type veth peer name rlan netns "$RT"
ip link add up1 netns "$RT" type veth peer name s1 netns "$SRV"
ip link add up2 netns "$RT" type veth peer name s2 netns "$SRV"
in_ns "$LAN" ip addr add 10.61.0.2/24 dev lan
in_ns "$LAN" ip addr add 10.61.0.50/24 dev lan   # a second "device", bypassed in step 4
in_ns "$LAN" ip link set lan up
in_ns "$LAN" ip route add default via 10.61.0.1
in_ns "$LAN" ip addr add fd61::2/64 dev lan nodad
in_ns "$LAN" ip -6 route add default via fd61::1
# The LAN host's resolver is the router (as DHCP would say); `ip netns exec` mounts this file.
mkdir -p "/etc/netns/$LAN"
echo 'nameserver 10.61.0.1' >"/etc/netns/$LAN/resolv.conf"
in_ns "$RT" ip addr add 10.61.0.1/24 dev rlan
in_ns "$RT" ip addr add fd61::1/64 dev rlan nodad
in_ns "$RT" ip addr add 10.62.1.2/24 dev up1
in_ns "$RT" ip addr add 10.62.2.2/24 dev up2
for i in rlan up1 up2; do in_ns "$RT" ip link set "$i" up; done
in_ns "$SRV" ip addr add 10.62.1.1/24 dev s1
in_ns "$SRV" ip addr add 10.62.2.1/24 dev s2
for a in 10.63.0.1/32 10.63.0.53/32 198.51.100.7/32 203.0.113.9/32 203.0.113.10/32; do in_ns "$SRV" ip addr add "$a" dev lo; done
in_ns "$SRV" ip addr add 2001:db8:7::7/128 dev lo nodad
for i in s1 s2; do in_ns "$SRV" ip link set "$i" up; done
# Two equal links, each way: 40 Mbit/s (tbf; this kernel may have no netem).
for pair in "$RT up1" "$RT up2" "$SRV s1" "$SRV s2"; do
  read -r ns dev <<<"$pair"
  in_ns "$ns" tc qdisc add dev "$dev" root tbf rate 40mbit burst 32kb latency 50ms
done
in_ns "$RT" sysctl -qw net.ipv4.ip_forward=0

# ------------------------------------------------------------------ plait server and targets
secret=$(plait keygen)
in_ns "$SRV" node test/system/router-target.mjs 198.51.100.7:8080 203.0.113.9:8080 203.0.113.10:8080 '[2001:db8:7::7]:8080' >"$tmp/target.log" 2>&1 &
pids+=($!)
in_ns "$SRV" node test/system/router-dns.mjs 10.63.0.53:53 stream.example=203.0.113.10 bonded.example=198.51.100.7 >"$tmp/dns.log" 2>&1 &
pids+=($!)
in_ns "$SRV" node test/system/udp-echo.mjs 198.51.100.7:9000 >"$tmp/echo.log" 2>&1 &
pids+=($!)
PLAIT_SECRET=$secret in_ns "$SRV" node packages/cli/bin/plait.js server --listen 10.63.0.1:7000 --dns-upstream 10.63.0.53:53 \
  --allow 198.51.100.0/24 --allow 203.0.113.0/24 --allow 2001:db8:7::/48 --log-level warn >"$tmp/server.log" 2>&1 &
pids+=($!)

# ------------------------------------------------------------------ 1. the rule set
common=(--lan rlan --dns 5353 --server 10.63.0.1 --uplink up1=10.62.1.1 --uplink up2=10.62.2.1 --reject-quic)
setup=("${common[@]}" --redirect 12345)
in_ns "$RT" node packages/cli/bin/plait.js router-setup "${setup[@]}" --rules-only >"$tmp/rules.nft"
in_ns "$RT" nft -c -f "$tmp/rules.nft" 2>"$tmp/nft-check.log" || fail "nft -c rejects the printed rules"
in_ns "$RT" node packages/cli/bin/plait.js router-setup "${setup[@]}" --bypass 203.0.113.9/32 --bypass-device 10.61.0.50 --iptables --rules-only >"$tmp/rules.ipt"
in_ns "$RT" iptables-restore --test --noflush "$tmp/rules.ipt" 2>"$tmp/ipt-check.log" || fail "iptables-restore --test rejects the printed rules"
in_ns "$RT" node packages/cli/bin/plait.js router-setup "${setup[@]}" >"$tmp/apply.sh"
in_ns "$RT" sh "$tmp/apply.sh" 2>"$tmp/apply.log" || fail "the set-up script failed"
in_ns "$RT" sh "$tmp/apply.sh" 2>"$tmp/apply.log" || fail "the set-up script failed when run again"
[ "$(in_ns "$RT" ip rule | grep -c 'lookup 101')" = 2 ] || fail "running the script twice left duplicate ip rules: $(in_ns "$RT" ip rule)"
[ "$(in_ns "$RT" sysctl -n net.ipv4.ip_forward)" = 0 ] || fail "the router forwards without a bypass rule"
say "rules: nft -c, iptables-restore --test and loading (twice) passed"

# ------------------------------------------------------------------ the router's plait client
PLAIT_SECRET=$secret in_ns "$RT" node packages/cli/bin/plait.js client --server 10.63.0.1:7000 --via up1 --via up2 \
  --redirect "[::]:12345" --tproxy 12346 --dns 0.0.0.0:5353 --bypass-domain stream.example \
  --socks 10.61.0.1:1080 --stats 127.0.0.1:9100 --log-level info >"$tmp/client.log" 2>&1 &
pids+=($!)
stats() { in_ns "$RT" curl -s http://127.0.0.1:9100/stats; }
# Whole outputs first, then grep: `cmd | grep -q` under pipefail fails when grep stops reading early.
left_undone() {
  local tables rules
  tables=$(in_ns "$RT" nft list tables)
  rules=$(in_ns "$RT" ip rule)
  grep -q plait <<<"$tables" && fail "--undo left the nftables table"
  grep -qE "$1" <<<"$rules" && fail "--undo left ip rules: $rules"
  return 0
}
jsonq() { node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const j=JSON.parse(s);process.stdout.write(String(($1)(j)))})"; }
for _ in $(seq 150); do
  n=$(stats 2>/dev/null | jsonq 'j => (j.sessions[0]?.subflows ?? []).filter(x => x.state === "active").length' 2>/dev/null || echo 0)
  [ "$n" = 2 ] && break
  sleep 0.1
done
[ "$n" = 2 ] || fail "the client did not bring up two subflows (one per uplink)"
grep -q 'listening 203.0.113.9:8080' "$tmp/target.log" || fail "the target server is not up"

# ------------------------------------------------------------------ 2. a plain curl, bonded
before=$(stats | jsonq 'j => j.sessions[0].subflows.map(x => x.bytesReceived).join(" ")')
size=$((16 * 1024 * 1024))
in_ns "$LAN" curl -sS --max-time 60 -o "$tmp/got" "http://198.51.100.7:8080/bytes?n=$size" 2>"$tmp/curl.log" || fail "curl from the LAN host failed: $(cat "$tmp/curl.log")"
after=$(stats | jsonq 'j => j.sessions[0].subflows.map(x => x.bytesReceived).join(" ")')
want=$(node -e "const b=Buffer.alloc(65536);for(let i=0;i<b.length;i++)b[i]=(i*31+7)&0xff;const h=require('crypto').createHash('sha256');let l=$size;while(l>0){const c=b.subarray(0,Math.min(l,b.length));h.update(c);l-=c.length}console.log(h.digest('hex'))")
got=$(sha256sum "$tmp/got" | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "the download arrived damaged ($(stat -c %s "$tmp/got") bytes)"
read -r b1 b2 <<<"$before"
read -r a1 a2 <<<"$after"
d1=$((a1 - b1))
d2=$((a2 - b2))
say "16 MiB through REDIRECT intact; subflow bytes received: $d1 + $d2"
[ "$d1" -ge $((size / 10)) ] && [ "$d2" -ge $((size / 10)) ] || fail "an uplink carried less than 10 % ($d1, $d2)"
# IPv6: the same REDIRECT rule; the dual-stack listener reads IP6T_SO_ORIGINAL_DST.
v6=$(in_ns "$LAN" curl -sS --max-time 20 "http://[2001:db8:7::7]:8080/bytes?n=1048576" 2>"$tmp/curl.log" | sha256sum | cut -d' ' -f1) || true
[ "$v6" = "$(head -c 1048576 "$tmp/got" | sha256sum | cut -d' ' -f1)" ] || fail "1 MiB over IPv6 through the redirect did not arrive intact: $(cat "$tmp/curl.log")"
say "IPv6: 1 MiB from [2001:db8:7::7] through the same redirect intact"
accepted=$(stats | jsonq 'j => j.counters.transparentAccepted')
[ "$accepted" -ge 1 ] || fail "transparentAccepted is $accepted"

# DNS from the LAN host to the router's port 53: redirected to --dns, resolved by the server's upstream.
name=$(in_ns "$LAN" getent ahostsv4 bonded.example | awk 'NR == 1 { print $1 }')
[ "$name" = 198.51.100.7 ] || fail "bonded.example did not resolve through --dns (got '$name')"
queries=$(stats | jsonq 'j => j.counters.dnsAnswers')
[ "$queries" -ge 1 ] || fail "the lookup did not go through plait's DNS forwarder (dnsAnswers $queries)"
say "DNS: bonded.example -> $name through the redirect to --dns ($queries answers)"
# SOCKS5 UDP ASSOCIATE from the LAN host: 300 datagrams to an echo server behind the plait server.
echo_json=$(in_ns "$LAN" node test/system/socks-udp-echo.mjs 10.61.0.1:1080 198.51.100.7:9000 300 10) || fail "the SOCKS5 UDP echo failed"
received=$(jsonq 'j => j.received' <<<"$echo_json")
ping_ms=$(in_ns "$RT" ping -c 5 -i 0.2 -I up1 10.62.1.1 | sed -n 's#.*= [0-9.]*/\([0-9.]*\)/.*#\1#p')
say "SOCKS5 UDP echo: $echo_json (ping over up1: avg ${ping_ms} ms)"
[ "$received" -ge 285 ] || fail "only $received of 300 UDP datagrams came back"
# These links add no delay (no netem here), so "near the fastest link's RTT" means plait's own
# cost on top of the ping stays small: a datagram queued behind stream data would take far longer.
median=$(jsonq 'j => j.medianMs' <<<"$echo_json")
node -e 'const [m, p] = process.argv.slice(1).map(Number); process.exit(m <= p + 10 ? 0 : 1)' "$median" "${ping_ms:-0}" ||
  fail "UDP echo median ${median} ms is not within 10 ms of the uplink's ping (${ping_ms} ms)"

# ------------------------------------------------------------------ 3. a loop is dropped and counted
in_ns "$LAN" curl -s --max-time 5 -o /dev/null http://10.61.0.1:12345/ && fail "a direct connection to the redirect port was served"
loops=$(stats | jsonq 'j => j.counters.transparentLoops')
[ "$loops" -ge 1 ] || fail "the direct connection was not counted as a loop (transparentLoops $loops)"
grep -q 'is this listener itself' "$tmp/client.log" || fail "no log line about the loop"
say "a connection straight to the redirect port: dropped, counted, logged"

# ------------------------------------------------------------------ 4. bypass by destination
bypass=(--bypass 203.0.113.9/32 --bypass-device 10.61.0.50 --bypass-domain stream.example --bypass-via up1)
in_ns "$RT" node packages/cli/bin/plait.js router-setup "${setup[@]}" "${bypass[@]}" >"$tmp/apply-bypass.sh"
in_ns "$RT" sh "$tmp/apply-bypass.sh" 2>"$tmp/apply.log" || fail "the set-up script with --bypass failed"
direct=$(in_ns "$LAN" curl -sS --max-time 10 http://203.0.113.9:8080/whoami 2>"$tmp/curl.log") || fail "the bypassed destination is unreachable: $(cat "$tmp/curl.log")"
bonded=$(in_ns "$LAN" curl -sS --max-time 10 http://198.51.100.7:8080/whoami 2>"$tmp/curl.log") || fail "the bonded destination is unreachable with a bypass rule: $(cat "$tmp/curl.log")"
device=$(in_ns "$LAN" curl -sS --max-time 10 --interface 10.61.0.50 http://198.51.100.7:8080/whoami 2>"$tmp/curl.log") || fail "the bypassed device cannot reach 198.51.100.7: $(cat "$tmp/curl.log")"
[ "$direct" = 10.62.1.2 ] || fail "the bypassed connection arrived from $direct, not from the router's up1 (10.62.1.2)"
[ "$device" = 10.62.1.2 ] || fail "the bypassed device's connection arrived from $device, not from the router's up1 (10.62.1.2)"
case "$bonded" in 10.62.* | 10.61.*) fail "the bonded connection arrived from $bonded: it was not carried by plait" ;; esac
byname=$(in_ns "$LAN" curl -sS --max-time 10 http://stream.example:8080/whoami 2>"$tmp/curl.log") || fail "stream.example is unreachable: $(cat "$tmp/curl.log")"
[ "$byname" = 10.62.1.2 ] || fail "the connection to the bypassed domain arrived from $byname, not from the router's up1"
set4=$(in_ns "$RT" nft list set inet plait bypass_dns4)
grep -q '203.0.113.10 timeout' <<<"$set4" || fail "203.0.113.10 is not in the bypass_dns4 set: $set4"
added=$(stats | jsonq 'j => j.counters.bypassAddressesAdded')
say "bypass by domain: stream.example -> 203.0.113.10 in bypass_dns4 ($added added) before the answer reached curl: its first connection went out up1 directly"
now=$(stats | jsonq 'j => j.counters.transparentAccepted')
[ "$now" = $((accepted + 1)) ] || fail "transparentAccepted went from $accepted to $now (the bypassed connection must not reach plait)"
say "bypass: 203.0.113.9, and device 10.61.0.50 to 198.51.100.7, went out up1 directly (seen from $direct, $device); 198.51.100.7 from 10.61.0.2 still through plait (seen from $bonded)"

# ------------------------------------------------------------------ 5. undo
in_ns "$RT" node packages/cli/bin/plait.js router-setup "${setup[@]}" "${bypass[@]}" --undo | in_ns "$RT" sh
left_undone 'lookup 10[12]'
say "undo: table and rules gone"

# ------------------------------------------------------------------ 6. TPROXY instead of REDIRECT
tsetup=("${common[@]}" --tproxy 12346)
in_ns "$RT" node packages/cli/bin/plait.js router-setup "${tsetup[@]}" --rules-only >"$tmp/rules-tproxy.nft"
in_ns "$RT" nft -c -f "$tmp/rules-tproxy.nft" 2>"$tmp/nft-check.log" || fail "nft -c rejects the printed TPROXY rules"
in_ns "$RT" node packages/cli/bin/plait.js router-setup "${tsetup[@]}" --iptables --rules-only >"$tmp/rules-tproxy.ipt"
in_ns "$RT" iptables-restore --test --noflush "$tmp/rules-tproxy.ipt" 2>"$tmp/ipt-check.log" || fail "iptables-restore --test rejects the TPROXY rules"
in_ns "$RT" node packages/cli/bin/plait.js router-setup "${tsetup[@]}" | in_ns "$RT" sh 2>"$tmp/apply.log" || fail "the TPROXY set-up script failed"
before=$(stats | jsonq 'j => j.counters.transparentAccepted')
tsize=$((4 * 1024 * 1024))
in_ns "$LAN" curl -sS --max-time 60 -o "$tmp/got-tproxy" "http://198.51.100.7:8080/bytes?n=$tsize" 2>"$tmp/curl.log" || fail "curl through TPROXY failed: $(cat "$tmp/curl.log")"
cmp -s <(head -c "$tsize" "$tmp/got") "$tmp/got-tproxy" || fail "the TPROXY download arrived damaged"
after=$(stats | jsonq 'j => j.counters.transparentAccepted')
[ "$after" = $((before + 1)) ] || fail "transparentAccepted went from $before to $after through TPROXY"
in_ns "$RT" node packages/cli/bin/plait.js router-setup "${tsetup[@]}" --undo | in_ns "$RT" sh
left_undone 'lookup (100|101|102)'
say "TPROXY: 4 MiB intact through --tproxy; undo clean"
say "passed"
