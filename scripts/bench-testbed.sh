#!/usr/bin/env bash
# bench-testbed.sh - plait vs single-path TCP vs kernel MPTCP on the packet-level
# netns testbed (/work/shared/testbed: tbf-shaped, NFQUEUE-delayed veth links).
#
#   scripts/bench-testbed.sh [options] ["SPEC SPEC ..." ...]
#     each positional argument is one spec list (quoted), run one after the other;
#     default: "40mbit:10ms 10mbit:60ms". SPEC = RATE[:DELAY[/BACKDELAY]][:LOSS%] (netbed.sh up).
#   options:
#     -t SECS     duration of each throughput / latency measurement (default 20)
#     -w SECS     ramp-up excluded from goodput (default 2): the window is [w, t) after the first byte
#     -n RUNS     throughput runs per direction (default 1)
#     -f SECS     failover download duration (default 30; blackhole link 1 at 1/3, restore at 2/3)
#     -d DIRS     upload,download (default both)
#     -p PARTS    comma list of throughput,failover,kfailover,latency,startup,anchor (default all;
#                 startup = each link dead in turn when the client starts: time to the first byte,
#                 kfailover = kernel MPTCP failover measured the same way as plait's,
#                 anchor = the testbed's own bench_failover.sh once, for the kernel's figure;
#                 not in the default: slowlink = a fixed-size transfer per direction (-b) during
#                 which the last link is cut to -C for -c seconds, from -W s after the first byte:
#                 the longest receiver gap and the transfer time, plait then kernel MPTCP)
#     -b BYTES    slowlink transfer size (default 50331648 = 48 MiB)
#     -C RATE     slowlink: the rate the last link is cut to (default 100kbit)
#     -c SECS     slowlink: how long the cut lasts (default 8)
#     -W SECS     slowlink: when the cut starts, after the transfer starts (default 2)
#     -s SCHED    plait --scheduler (default: plait's default)
#     -I          skip the iperf3 cross-check of single-path and MPTCP goodput
#     -M          also run the testbed's bench_mptcp.sh -n 1 (kernel aggregation anchor)
#     -F          take an existing netbed down first (otherwise a bed already up = busy)
#     -B          rebuild plait first (npx tsc -b); by default only if dist/ is missing
#     -L          run the live build in packages/*/dist (default: a snapshot of it taken at the
#                 start, so a rebuild by someone else mid-run cannot mix two versions)
#   -p udp (not in the default): SOCKS5 UDP echo through plait (scripts/bench-udp.mjs), without
#                 and with --udp-duplicate: latency idle and under a bulk download vs link 1's
#                 `ping -U` RTT, then a datagram every 20 ms for 10 s with link 1 blackholed
#                 from 3 s to 7 s: lost, late (> 500 ms), longest gap, first reply after the cut
#   env: PLAIT_TESTBED (default ../shared/testbed beside the repository), NETBED_BIN (default /tmp/netbed-bin)
#
# Method: every goodput figure (single-path TCP, kernel MPTCP, plait) comes from the
# same receiver (scripts/testbed-tools.mjs), which timestamps deliveries in 10 ms
# bins; goodput = bytes delivered in [w, t) seconds after the receiver's first byte.
# Single-path: plain TCP bound to 10.77.k.1 -> 10.77.k.2. MPTCP: `netbed.sh mptcp`
# + mptcpize on both ends (as bench_mptcp.sh). plait: server in nb-srv on
# 10.77.1.2:7000, bulk source/sink/echo on 127.0.0.1 in nb-srv, client in nb-cli
# with one --bind per link and --forward to them. Kernel metrics are not cached
# between connections (tcp_no_metrics_save=1 in both namespaces).
# Output: a table on stdout, JSON in bench-results/testbed-<timestamp>.json, raw
# files in bench-results/testbed-<timestamp>/.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
TOOLS="$HERE/testbed-tools.mjs"
PLAIT="$REPO/packages/cli/bin/plait.js"
TB="${PLAIT_TESTBED:-$(cd "$REPO/../shared/testbed" 2>/dev/null && pwd || echo /work/shared/testbed)}"
export NETBED_BIN="${NETBED_BIN:-/tmp/netbed-bin}"
NB="$TB/netbed.sh"
TS="$(date +%Y%m%d-%H%M%S)"
RESDIR="$REPO/bench-results"
OUTJSON="$RESDIR/testbed-$TS.json"
RAW="$RESDIR/testbed-$TS"

SECS=20 WARM=2 RUNS=1 FOSECS=30 DIRS="upload,download" PARTS="throughput,failover,kfailover,latency,startup,anchor"
SCHED="" IPERF=1 ANCHOR_MPTCP=0 FORCE=0 BUILD=0 LIVE=0
SLOWBYTES=50331648 CUTRATE=100kbit CUTSECS=8 CUTAT=2
usage() { sed -n '2,44p' "$0"; exit 2; }
while getopts "t:w:n:f:d:p:s:b:C:c:W:IMFBLh" o; do
  case $o in
    t) SECS=$OPTARG;; w) WARM=$OPTARG;; n) RUNS=$OPTARG;; f) FOSECS=$OPTARG;; d) DIRS=$OPTARG;; p) PARTS=$OPTARG;;
    s) SCHED=$OPTARG;; b) SLOWBYTES=$OPTARG;; C) CUTRATE=$OPTARG;; c) CUTSECS=$OPTARG;; W) CUTAT=$OPTARG;; I) IPERF=0;; M) ANCHOR_MPTCP=1;; F) FORCE=1;; B) BUILD=1;; L) LIVE=1;; *) usage;;
  esac
done
shift $((OPTIND-1))
SPECLISTS=("$@")
[[ ${#SPECLISTS[@]} -eq 0 ]] && SPECLISTS=("40mbit:10ms 10mbit:60ms")
has() { [[ ",$1," == *",$2,"* ]]; }

unavailable() {
  local reason=$1
  echo "bench-testbed: the testbed is unavailable, nothing was measured: $reason" >&2
  local j
  j=$(node -e 'console.log(JSON.stringify({testbed:"unavailable",reason:process.argv[1]}))' "$reason" 2>/dev/null \
      || printf '{"testbed":"unavailable","reason":"%s"}' "${reason//\"/\'}")
  echo "$j"
  { mkdir -p "$RESDIR" && echo "$j" > "$OUTJSON"; } 2>/dev/null || true
  exit 0
}

# ------------------------------------------------------------------ preflight
[[ $EUID -eq 0 ]] || unavailable "not root (the testbed needs network namespaces, tc and nftables)"
[[ -d $TB ]] || unavailable "testbed folder $TB not found (set PLAIT_TESTBED)"
[[ -x $NB ]] || unavailable "$NB missing or not executable"
command -v node >/dev/null || unavailable "node not found"
need_setup=0
[[ -x $NETBED_BIN/delayq ]] || need_setup=1
for c in iperf3 mptcpize ping ss nft iptables tc; do command -v "$c" >/dev/null || need_setup=1; done
if [[ $need_setup == 1 ]]; then
  echo "bench-testbed: delay line ($NETBED_BIN/delayq) or tools missing: running $TB/setup.sh" >&2
  mkdir -p "$RESDIR"
  if ! bash "$TB/setup.sh" > "$RESDIR/testbed-setup-$TS.log" 2>&1; then
    unavailable "setup.sh failed (log: $RESDIR/testbed-setup-$TS.log)"
  fi
  [[ -x $NETBED_BIN/delayq ]] || unavailable "delay line $NETBED_BIN/delayq still missing after setup.sh"
fi
if ip netns list 2>/dev/null | grep -qwE 'nb-cli|nb-srv'; then
  if [[ $FORCE == 1 ]]; then "$NB" down >/dev/null 2>&1 || true
  else unavailable "testbed busy: a netbed is already up (another benchmark?); rerun with -F to take it down"; fi
fi
if [[ $BUILD == 1 || ! -f $REPO/packages/cli/dist/main.js && ! -f $REPO/packages/cli/dist/index.js ]]; then
  echo "bench-testbed: building plait (npx tsc -b)" >&2
  (cd "$REPO" && npx tsc -b) || unavailable "plait does not build (npx tsc -b failed)"
fi

mkdir -p "$RAW"
MAN="$RAW/manifest.jsonl"
CMDLOG="$RAW/commands.log"
: > "$MAN"; : > "$CMDLOG"

# ------------------------------------------------------------------ process bookkeeping
PIDS=()
LASTPID=""
# bg NS NAME CMD...  - start CMD in namespace nb-NS (cli|srv) in its own session, log to RAW/NAME.log
bg() {
  local ns=$1 name=$2; shift 2
  echo "[$(date +%T)] (nb-$ns, bg) $*" >> "$CMDLOG"
  ip netns exec "nb-$ns" setsid "$@" > "$RAW/$name.log" 2>&1 < /dev/null &
  LASTPID=$!
  PIDS+=("$LASTPID")
}
# fg NS TIMEOUT NAME CMD... - run CMD in nb-NS in the foreground, at most TIMEOUT s
fg() {
  local ns=$1 to=$2 name=$3; shift 3
  echo "[$(date +%T)] (nb-$ns) $*" >> "$CMDLOG"
  timeout -k 3 "$to" ip netns exec "nb-$ns" "$@" > "$RAW/$name.log" 2>&1 < /dev/null
}
mine() { [[ -n $1 && -r /proc/$1/stat ]] && [[ $(awk '{print $4}' "/proc/$1/stat" 2>/dev/null) == "$$" ]]; } # still our child?
stop() { # stop PID...: TERM (its process group and itself), then KILL after 3 s; only our own children
  local p
  for p in "$@"; do mine "$p" || continue; kill -TERM -- "-$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
  for p in "$@"; do
    mine "$p" || { wait "$p" 2>/dev/null; continue; }
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  return 0
}
waitpid_to() { # waitpid_to PID SECS: wait for PID at most SECS, then stop it
  local p=$1 s=$2 i
  for ((i=0; i<s*10; i++)); do kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }; sleep 0.1; done
  echo "bench-testbed: pid $p still running after $s s, stopping it" >&2
  stop "$p"; return 1
}
waitfile() { local f=$1 i; for ((i=0; i<100; i++)); do [[ -s $f ]] && return 0; sleep 0.05; done; echo "bench-testbed: $f not ready" >&2; return 1; }
BED_UP=0
ANCHOR_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $ANCHOR_PID ]] && stop "$ANCHOR_PID"
  [[ ${#PIDS[@]} -gt 0 ]] && stop "${PIDS[@]}"
  if [[ $BED_UP == 1 ]]; then "$NB" down >/dev/null 2>&1 || true; fi
  [[ -n ${SNAP:-} && -d $SNAP ]] && rm -rf "$SNAP"
  exit $rc
}
trap cleanup EXIT
trap 'echo "bench-testbed: interrupted" >&2; exit 130' INT TERM

epoch_ms() { date +%s%N | awk '{printf "%.3f", $1/1e6}'; }
man() { echo "$1" >> "$MAN"; }
say() { echo "[$(date +%T)] $* (load $(cut -d" " -f1 /proc/loadavg))" >&2; echo "[$(date +%T)] # $* (loadavg $(cut -d" " -f1-3 /proc/loadavg))" >> "$CMDLOG"; }

# shellcheck source=lib/dist-snapshot.sh
source "$HERE/lib/dist-snapshot.sh"   # distsum, snapshot_dist
SNAP=""
if [[ $LIVE == 0 ]]; then
  # a private copy of the built packages (third-party node_modules are linked, not copied)
  SNAP="/tmp/plait-bench-snap-$TS"
  snapshot_dist "$REPO" "$SNAP"
fi
DISTSUM=$(distsum "${SNAP:-$REPO}")
DISTTIME=$(find "$REPO"/packages/{core,node,client,server,cli}/dist -name '*.js' -printf '%TY-%Tm-%Td %TH:%TM:%.2TS\n' 2>/dev/null | sort | tail -1)
SECRET="$(node "$PLAIT" keygen 2>/dev/null | tail -1)"
[[ -n $SECRET ]] || { echo "bench-testbed: plait keygen failed" >&2; exit 1; }
SECRETFILE="$RAW/secret"   # a file, not argv: argv is readable by every local user
( umask 077; printf '%s\n' "$SECRET" > "$SECRETFILE" )

bed_up() {
  local specs=("$@")
  echo "[$(date +%T)] $NB up ${specs[*]}" >> "$CMDLOG"
  "$NB" up "${specs[@]}" > "$RAW/netbed-up.log" 2>&1 || { cat "$RAW/netbed-up.log" >&2; echo "bench-testbed: netbed up failed" >&2; exit 1; }
  BED_UP=1
  cat "$RAW/netbed-up.log" >&2
  "$NB" mptcp >> "$RAW/netbed-up.log" 2>&1
  echo "[$(date +%T)] $NB mptcp" >> "$CMDLOG"
  local ns
  for ns in nb-cli nb-srv; do ip netns exec "$ns" sysctl -qw net.ipv4.tcp_no_metrics_save=1; done
  CC=$(ip netns exec nb-cli sysctl -n net.ipv4.tcp_congestion_control)
}
bed_down() { "$NB" down >/dev/null 2>&1 || true; BED_UP=0; }

# ------------------------------------------------------------------ measurements
# bulk METHOD DIR TAG SRVPORT SRVLISTEN CLITO CLIBIND [PREFIX...]
#   one bulk transfer of SECS; the receiver is in nb-srv for upload, nb-cli for download
bulk() {
  local method=$1 dirn=$2 tag=$3 listen=$4 to=$5 bind=$6; shift 6
  local prefix=("$@")
  local smode cmode
  if [[ $dirn == upload ]]; then smode=sink; cmode=send; else smode=source; cmode=recv; fi
  local sout="$RAW/$tag.srv.json" cout="$RAW/$tag.cli.json"
  rm -f "$RAW/$tag.ready"
  bg srv "$tag.srv" "${prefix[@]}" node "$TOOLS" serve --listen "$listen" --mode "$smode" --secs "$SECS" --once --out "$sout" --ready "$RAW/$tag.ready"
  local spid=$LASTPID
  waitfile "$RAW/$tag.ready"
  local bargs=(); [[ -n $bind ]] && bargs=(--bind "$bind")
  fg cli $((SECS+40)) "$tag.cli" "${prefix[@]}" node "$TOOLS" connect --to "$to" "${bargs[@]}" --mode "$cmode" --secs "$SECS" --out "$cout"
  waitpid_to "$spid" 15
  if [[ $dirn == upload ]]; then BULK_RECV="$tag.srv.json"; BULK_SEND="$tag.cli.json"; else BULK_RECV="$tag.cli.json"; BULK_SEND="$tag.srv.json"; fi
}

iperf_srv_up() {
  bg srv iperf3-server mptcpize run iperf3 -s -p 5201
  IPERF_PID=$LASTPID
  sleep 0.7
}

plait_up() { # plait_up TAG NLINKS: fresh server + client + pollers
  local tag=$1 n=$2 k
  local binds=()
  for ((k=1; k<=n; k++)); do binds+=(--bind "10.77.$k.1"); done
  local sched=(); [[ -n $SCHED ]] && sched=(--scheduler "$SCHED")
  bg srv "$tag.plait-server" node "$PLAIT" server --listen 10.77.1.2:7000 --secret-file "$SECRETFILE" --allow-private --stats 127.0.0.1:7101 --log-level info
  PSRV=$LASTPID
  sleep 0.6
  bg cli "$tag.plait-client" node "$PLAIT" client --server 10.77.1.2:7000 --secret-file "$SECRETFILE" "${binds[@]}" \
    --forward 8001:127.0.0.1:9001 --forward 8002:127.0.0.1:9002 --forward 8003:127.0.0.1:9003 --stats 127.0.0.1:7100 "${sched[@]}" --log-level info
  PCLI=$LASTPID
  fg cli 15 "$tag.wait-session" node "$TOOLS" wait-session --url http://127.0.0.1:7100/stats --subflows "$n" --timeout 12 \
    || say "plait session not fully up: $(cat "$RAW/$tag.wait-session.log")"
  local ifs; ifs=$(seq -s, -f 'nbc%g' 1 "$n")
  bg cli "$tag.poll-cli" node "$TOOLS" poll --url http://127.0.0.1:7100/stats --ifaces "$ifs" --ss --interval 100 --out "$RAW/$tag.poll-cli.jsonl"
  PPC=$LASTPID
  bg srv "$tag.poll-srv" node "$TOOLS" poll --url http://127.0.0.1:7101/stats --ss --interval 100 --out "$RAW/$tag.poll-srv.jsonl"
  PPS=$LASTPID
  sleep 0.3
}
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/t}' "/proc/$1/stat" 2>/dev/null || echo null; }
plait_down() {
  sleep 0.4   # a plait process told to stop by anyone else exits ~0.3 s later: catch that
  PALIVE=true
  mine "$PCLI" && mine "$PSRV" || PALIVE=false
  [[ $PALIVE == false ]] && say "WARNING: a plait process (client $PCLI / server $PSRV) exited before this script stopped it (killed from outside?)"
  PCPU="{\"client\":$(cpu_s "$PCLI"),\"server\":$(cpu_s "$PSRV")}"
  stop "$PPC" "$PPS" "$PCLI" "$PSRV"
}
others() { pgrep -f 'scripts/bench(-memory)?\.mjs|vitest' >/dev/null && echo true || echo false; } # another benchmark running now?

measure_throughput() { # SPECSTR N RUN DIR
  local spec=$1 n=$2 r=$3 dirn=$4 k tag rflag=""
  [[ $dirn == download ]] && rflag=-R
  local sp; [[ $dirn == upload ]] && sp=9001 || sp=9002
  for ((k=1; k<=n; k++)); do
    tag="r$r-$dirn-tcp-link$k"; say "$tag"
    bulk tcp "$dirn" "$tag" "0.0.0.0:5301" "10.77.$k.2:5301" "10.77.$k.1"
    man "{\"kind\":\"throughput\",\"spec\":\"$spec\",\"run\":$r,\"direction\":\"$dirn\",\"method\":\"tcp\",\"link\":$k,\"secs\":$SECS,\"recv\":\"$BULK_RECV\",\"send\":\"$BULK_SEND\"}"
    sleep 1.5
    if [[ $IPERF == 1 ]]; then
      tag="r$r-$dirn-iperf3-tcp-link$k"; say "$tag"
      fg cli $((SECS+30)) "$tag" iperf3 -c "10.77.$k.2" -B "10.77.$k.1" -p 5201 -t $((SECS-WARM)) -O "$WARM" $rflag -J
      cp "$RAW/$tag.log" "$RAW/$tag.json"
      man "{\"kind\":\"throughput\",\"spec\":\"$spec\",\"run\":$r,\"direction\":\"$dirn\",\"method\":\"iperf3-tcp\",\"link\":$k,\"secs\":$SECS,\"json\":\"$tag.json\"}"
      sleep 1.5
    fi
  done
  tag="r$r-$dirn-mptcp"; say "$tag"
  bg cli "$tag.poll-cli" node "$TOOLS" poll --ss --ifaces "$(seq -s, -f 'nbc%g' 1 "$n")" --interval 250 --out "$RAW/$tag.poll-cli.jsonl"
  local pp=$LASTPID
  bg srv "$tag.poll-srv" node "$TOOLS" poll --ss --interval 250 --out "$RAW/$tag.poll-srv.jsonl"
  local pps=$LASTPID
  bulk mptcp "$dirn" "$tag" "0.0.0.0:5311" "10.77.1.2:5311" "" mptcpize run
  stop "$pp" "$pps"
  local mpsender="$tag.poll-cli.jsonl"; [[ $dirn == download ]] && mpsender="$tag.poll-srv.jsonl"
  man "{\"kind\":\"throughput\",\"spec\":\"$spec\",\"run\":$r,\"direction\":\"$dirn\",\"method\":\"mptcp\",\"secs\":$SECS,\"recv\":\"$BULK_RECV\",\"send\":\"$BULK_SEND\",\"poll\":\"$mpsender\"}"
  sleep 1.5
  if [[ $IPERF == 1 ]]; then
    tag="r$r-$dirn-iperf3-mptcp"; say "$tag"
    fg cli $((SECS+30)) "$tag" mptcpize run iperf3 -c 10.77.1.2 -p 5201 -t $((SECS-WARM)) -O "$WARM" $rflag -J
    cp "$RAW/$tag.log" "$RAW/$tag.json"
    man "{\"kind\":\"throughput\",\"spec\":\"$spec\",\"run\":$r,\"direction\":\"$dirn\",\"method\":\"iperf3-mptcp\",\"secs\":$SECS,\"json\":\"$tag.json\"}"
    sleep 1.5
  fi
  local try ob
  for try in 1 2; do
    tag="r$r-$dirn-plait"; [[ $try == 2 ]] && tag="r$r-$dirn-plait-retry"
    say "$tag"
    ob=$(others)
    plait_up "$tag" "$n"
    bulk plait "$dirn" "$tag" "127.0.0.1:$sp" "127.0.0.1:$((sp-1000))" ""
    { echo "### ss -tni nb-cli"; ip netns exec nb-cli ss -tni; echo "### ss -tni nb-srv"; ip netns exec nb-srv ss -tni; "$NB" status; } > "$RAW/$tag.after.txt" 2>&1
    [[ $ob == true ]] || ob=$(others)
    plait_down
    if [[ $PALIVE == false && $try == 1 ]]; then
      say "discarding $tag (plait was stopped from outside mid-run) and running it again"
      man "{\"kind\":\"discarded\",\"spec\":\"$spec\",\"run\":$r,\"direction\":\"$dirn\",\"method\":\"plait\",\"why\":\"plait process exited before the script stopped it\",\"recv\":\"$BULK_RECV\",\"send\":\"$BULK_SEND\"}"
      sleep 1.5; continue
    fi
    man "{\"kind\":\"throughput\",\"spec\":\"$spec\",\"run\":$r,\"direction\":\"$dirn\",\"method\":\"plait\",\"secs\":$SECS,\"recv\":\"$BULK_RECV\",\"send\":\"$BULK_SEND\",\"pollCli\":\"$tag.poll-cli.jsonl\",\"pollSrv\":\"$tag.poll-srv.jsonl\",\"cpu\":$PCPU,\"plaitAliveAtEnd\":$PALIVE,\"otherBenchRunning\":$ob}"
    break
  done
  sleep 1.5
}

# failover download: METHOD (plait|mptcp) SPECSTR N
measure_failover() {
  local method=$1 spec=$2 n=$3; local tag="failover-$method"
  local bh_after rs_after
  bh_after=$(awk -v s="$FOSECS" 'BEGIN{printf "%.2f", s/3}')
  say "$tag ($FOSECS s download, blackhole link 1 at ~${bh_after}s, restore at ~2/3)"
  local prefix=() to pollargs=()
  rm -f "$RAW/$tag.ready"
  if [[ $method == plait ]]; then
    plait_up "$tag" "$n"
    bg srv "$tag.srv" node "$TOOLS" serve --listen 127.0.0.1:9002 --mode source --secs "$FOSECS" --once --out "$RAW/$tag.srv.json" --ready "$RAW/$tag.ready"
    to=127.0.0.1:8002
  else
    prefix=(mptcpize run)
    bg cli "$tag.poll-cli" node "$TOOLS" poll --ss --ifaces "$(seq -s, -f 'nbc%g' 1 "$n")" --interval 100 --out "$RAW/$tag.poll-cli.jsonl"
    PPC=$LASTPID
    bg srv "$tag.srv" mptcpize run node "$TOOLS" serve --listen 0.0.0.0:5312 --mode source --secs "$FOSECS" --once --out "$RAW/$tag.srv.json" --ready "$RAW/$tag.ready"
    to=10.77.1.2:5312
  fi
  local spid=$LASTPID
  waitfile "$RAW/$tag.ready"
  bg cli "$tag.cli" "${prefix[@]}" node "$TOOLS" connect --to "$to" --mode recv --secs "$FOSECS" --out "$RAW/$tag.cli.json"
  local cpid=$LASTPID
  sleep "$bh_after"
  local tbh trs tstop
  tbh=$(epoch_ms); "$NB" blackhole 1 >> "$RAW/$tag.events.log" 2>&1
  echo "[$(date +%T)] $NB blackhole 1" >> "$CMDLOG"
  sleep "$bh_after"
  trs=$(epoch_ms); "$NB" restore 1 >> "$RAW/$tag.events.log" 2>&1
  echo "[$(date +%T)] $NB restore 1" >> "$CMDLOG"
  waitpid_to "$cpid" $((FOSECS+60))
  tstop=$(epoch_ms)
  waitpid_to "$spid" 10
  echo "{\"blackholeEpochMs\":$tbh,\"restoreEpochMs\":$trs,\"stopEpochMs\":$tstop}" > "$RAW/$tag.events.json"
  if [[ $method == plait ]]; then
    plait_down
    man "{\"plaitAliveAtEnd\":$PALIVE,\"otherBenchRunning\":$(others),\"kind\":\"failover\",\"spec\":\"$spec\",\"method\":\"plait\",\"secs\":$FOSECS,\"recv\":\"$tag.cli.json\",\"send\":\"$tag.srv.json\",\"events\":\"$tag.events.json\",\"poll\":\"$tag.poll-cli.jsonl\",\"pollCli\":\"$tag.poll-cli.jsonl\",\"pollSrv\":\"$tag.poll-srv.jsonl\",\"cpu\":$PCPU}"
  else
    stop "$PPC"
    man "{\"kind\":\"failover\",\"spec\":\"$spec\",\"method\":\"mptcp\",\"secs\":$FOSECS,\"recv\":\"$tag.cli.json\",\"send\":\"$tag.srv.json\",\"events\":\"$tag.events.json\",\"poll\":\"$tag.poll-cli.jsonl\"}"
  fi
  sleep 2
}

measure_latency() { # SPECSTR N
  local spec=$1 n=$2 tag=latency
  say "latency: ping -U link 1, then plait 1 KiB RR every 50 ms idle and during a bulk download"
  fg cli 30 "$tag.ping-idle" ping -U -c 50 -i 0.1 -I 10.77.1.1 10.77.1.2
  plait_up "$tag" "$n"
  bg srv "$tag.echo" node "$TOOLS" serve --listen 127.0.0.1:9003 --mode echo
  local epid=$LASTPID
  sleep 0.5
  fg cli 20 "$tag.rr-idle.run" node "$TOOLS" connect --to 127.0.0.1:8003 --mode rr --secs 5 --interval 50 --size 1024 --out "$RAW/$tag.rr-idle.json"
  rm -f "$RAW/$tag.ready"
  bg srv "$tag.bulk-srv" node "$TOOLS" serve --listen 127.0.0.1:9002 --mode source --secs "$SECS" --once --out "$RAW/$tag.bulk-srv.json" --ready "$RAW/$tag.ready"
  local spid=$LASTPID
  waitfile "$RAW/$tag.ready"
  bg cli "$tag.bulk-cli" node "$TOOLS" connect --to 127.0.0.1:8002 --mode recv --out "$RAW/$tag.bulk-cli.json"
  local bpid=$LASTPID
  sleep "$WARM"
  local rrsecs=$((SECS-WARM-1))
  bg cli "$tag.ping-load" ping -U -c $((rrsecs*5)) -i 0.2 -I 10.77.1.1 10.77.1.2
  local ppid=$LASTPID
  fg cli $((rrsecs+20)) "$tag.rr-load.run" node "$TOOLS" connect --to 127.0.0.1:8003 --mode rr --secs "$rrsecs" --interval 50 --size 1024 --out "$RAW/$tag.rr-load.json"
  waitpid_to "$ppid" 10
  waitpid_to "$bpid" 60
  waitpid_to "$spid" 10
  stop "$epid"
  plait_down
  man "{\"plaitAliveAtEnd\":$PALIVE,\"otherBenchRunning\":$(others),\"kind\":\"latency\",\"spec\":\"$spec\",\"secs\":$SECS,\"pingIdle\":\"$tag.ping-idle.log\",\"pingLoad\":\"$tag.ping-load.log\",\"rrIdle\":\"$tag.rr-idle.json\",\"rrLoad\":\"$tag.rr-load.json\",\"bulkRecv\":\"$tag.bulk-cli.json\",\"bulkSend\":\"$tag.bulk-srv.json\",\"pollSrv\":\"$tag.poll-srv.jsonl\",\"pollCli\":\"$tag.poll-cli.jsonl\",\"cpu\":$PCPU}"
}

# set_rate K RATE: re-shape link K (both ends) to RATE, as netbed.sh up shapes it
set_rate() {
  local k=$1 rate=$2 bps burst
  bps=$(node -e 'const m=/^([\d.]+)(bit|kbit|mbit|gbit)?$/.exec(process.argv[1]);const f={bit:1,kbit:1e3,mbit:1e6,gbit:1e9}[m[2]??"bit"];console.log(Math.round(Number(m[1])*f))' "$rate")
  burst=$(( bps / 8 / 500 )); (( burst < 16384 )) && burst=16384
  ip netns exec nb-cli tc qdisc replace dev "nbc$k" root tbf rate "$bps" burst "$burst" latency "${NB_QLAT:-50ms}"
  ip netns exec nb-srv tc qdisc replace dev "nbs$k" root tbf rate "$bps" burst "$burst" latency "${NB_QLAT:-50ms}"
  echo "[$(date +%T)] link $k shaped to $rate ($bps bit/s, burst $burst)" >> "$CMDLOG"
}

# slowlink METHOD(plait|mptcp) DIR SPECSTR N: SLOWBYTES in DIR; the last link cut to CUTRATE for CUTSECS
measure_slowlink() {
  local method=$1 dirn=$2 spec=$3 n=$4 tag="slowlink-$1-$2"
  local rate0=${SPECS[$((n-1))]%%:*}
  say "$tag: $SLOWBYTES bytes, link $n cut from $rate0 to $CUTRATE for ${CUTSECS}s from ${CUTAT}s"
  local smode cmode listen to prefix=()
  if [[ $dirn == upload ]]; then smode=sink; cmode=send; else smode=source; cmode=recv; fi
  if [[ $method == plait ]]; then
    plait_up "$tag" "$n"
    if [[ $dirn == upload ]]; then listen=127.0.0.1:9001; to=127.0.0.1:8001; else listen=127.0.0.1:9002; to=127.0.0.1:8002; fi
  else
    prefix=(mptcpize run); listen=0.0.0.0:5313; to=10.77.1.2:5313
  fi
  rm -f "$RAW/$tag.ready"
  local secs=$((CUTAT + CUTSECS + 60))
  bg srv "$tag.srv" "${prefix[@]}" node "$TOOLS" serve --listen "$listen" --mode "$smode" --secs "$secs" --bytes "$SLOWBYTES" --once --out "$RAW/$tag.srv.json" --ready "$RAW/$tag.ready"
  local spid=$LASTPID
  waitfile "$RAW/$tag.ready"
  bg cli "$tag.cli" "${prefix[@]}" node "$TOOLS" connect --to "$to" --mode "$cmode" --secs "$secs" --bytes "$SLOWBYTES" --out "$RAW/$tag.cli.json"
  local cpid=$LASTPID
  sleep "$CUTAT"
  local tcut trs
  tcut=$(epoch_ms); set_rate "$n" "$CUTRATE"
  sleep "$CUTSECS"
  trs=$(epoch_ms); set_rate "$n" "$rate0"
  waitpid_to "$cpid" "$secs"
  waitpid_to "$spid" 10
  echo "{\"cutEpochMs\":$tcut,\"restoreEpochMs\":$trs}" > "$RAW/$tag.events.json"
  local recv send
  if [[ $dirn == upload ]]; then recv="$tag.srv.json"; send="$tag.cli.json"; else recv="$tag.cli.json"; send="$tag.srv.json"; fi
  local extra=""
  if [[ $method == plait ]]; then
    { echo "### ss -tni nb-cli"; ip netns exec nb-cli ss -tni; echo "### ss -tni nb-srv"; ip netns exec nb-srv ss -tni; } > "$RAW/$tag.after.txt" 2>&1
    plait_down
    extra=",\"pollCli\":\"$tag.poll-cli.jsonl\",\"pollSrv\":\"$tag.poll-srv.jsonl\",\"cpu\":$PCPU,\"plaitAliveAtEnd\":$PALIVE"
  fi
  man "{\"kind\":\"slowlink\",\"spec\":\"$spec\",\"method\":\"$method\",\"direction\":\"$dirn\",\"bytes\":$SLOWBYTES,\"link\":$n,\"cutRate\":\"$CUTRATE\",\"cutSecs\":$CUTSECS,\"recv\":\"$recv\",\"send\":\"$send\",\"events\":\"$tag.events.json\",\"otherBenchRunning\":$(others)$extra}"
  sleep 1.5
}

measure_startup() { # SPECSTR N: link K blackholed before the client starts, for each K
  local spec=$1 n=$2 k tag t0 fb
  for ((k=1; k<=n; k++)); do
    tag="startup-dead$k"
    say "$tag: link $k blackholed; client started; time to the first echoed byte through a forward"
    "$NB" blackhole "$k" >> "$RAW/$tag.events.log" 2>&1
    bg srv "$tag.plait-server" node "$PLAIT" server --listen 10.77.1.2:7000 --secret-file "$SECRETFILE" --allow-private --log-level info
    local psrv=$LASTPID
    bg srv "$tag.echo" node "$TOOLS" serve --listen 127.0.0.1:9003 --mode echo
    local epid=$LASTPID
    sleep 0.8
    local binds=() j
    for ((j=1; j<=n; j++)); do binds+=(--bind "10.77.$j.1"); done
    t0=$(date +%s%3N)
    bg cli "$tag.plait-client" node "$PLAIT" client --server 10.77.1.2:7000 --secret-file "$SECRETFILE" "${binds[@]}" --forward 8003:127.0.0.1:9003 --log-level info
    local pcli=$LASTPID
    fg cli 40 "$tag.first-byte" node "$TOOLS" first-byte --to 127.0.0.1:8003 --since "$t0" --timeout 30 --out "$RAW/$tag.json"
    fb=$(node -e 'try{const r=require(process.argv[1]);console.log(r.ok?r.firstByteMs:"none")}catch{console.log("none")}' "$RAW/$tag.json")
    say "$tag: first byte ${fb} ms after the client started (link $k dead)"
    STARTUP_RESULTS+=("{\"deadLink\":$k,\"firstByteMs\":$( [[ $fb == none ]] && echo null || echo "$fb" )}")
    stop "$pcli" "$psrv" "$epid"
    "$NB" restore "$k" >> "$RAW/$tag.events.log" 2>&1
    sleep 1
  done
  echo "{\"kind\":\"startup\",\"spec\":\"$spec\",\"results\":[$(IFS=,; echo "${STARTUP_RESULTS[*]}")]}" > "$RAW/startup.json"
  STARTUP_RESULTS=()
}
STARTUP_RESULTS=()

# ------------------------------------------------------------------ udp (-p udp)
# SOCKS5 UDP datagrams through plait on the bed: scripts/bench-udp.mjs --serve in nb-srv
# (UDP echo 127.0.0.1:9005, TCP bulk source 127.0.0.1:9006), a plait client in nb-cli with
# --socks 127.0.0.1:1080 and --forward 8006 to the source, and bench-udp.mjs in nb-cli
# against them; it blackholes link 1 itself with netbed.sh (ip netns exec nests).
UDPBENCH="$HERE/bench-udp.mjs"
udp_plait_up() { # TAG N DUP(0|1): a server and a client with a SOCKS port (plait_up has none)
  local tag=$1 n=$2 k binds=() dup=() sched=()
  [[ $3 == 1 ]] && dup=(--udp-duplicate)
  [[ -n $SCHED ]] && sched=(--scheduler "$SCHED")
  for ((k=1; k<=n; k++)); do binds+=(--bind "10.77.$k.1"); done
  bg srv "$tag.plait-server" node "$PLAIT" server --listen 10.77.1.2:7000 --secret-file "$SECRETFILE" --allow-private --stats 127.0.0.1:7101 --log-level info "${dup[@]}"
  PSRV=$LASTPID
  sleep 0.6
  bg cli "$tag.plait-client" node "$PLAIT" client --server 10.77.1.2:7000 --secret-file "$SECRETFILE" "${binds[@]}" \
    --socks 127.0.0.1:1080 --forward 8006:127.0.0.1:9006 --stats 127.0.0.1:7100 "${sched[@]}" "${dup[@]}" --log-level info
  PCLI=$LASTPID
  PPC="" PPS=""
  fg cli 15 "$tag.wait-session" node "$TOOLS" wait-session --url http://127.0.0.1:7100/stats --subflows "$n" --timeout 12 \
    || say "plait session not fully up: $(cat "$RAW/$tag.wait-session.log")"
}
measure_udp() { # SPECSTR N
  local spec=$1 n=$2 d tag rtt ob
  say "udp: ping -U link 1, then SOCKS5 UDP echo idle, under a bulk download and with link 1 blackholed, without and with --udp-duplicate"
  fg cli 30 udp.ping-idle ping -U -c 50 -i 0.1 -I 10.77.1.1 10.77.1.2
  rtt=$(grep -o 'time=[0-9.]*' "$RAW/udp.ping-idle.log" | cut -d= -f2 | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}')
  [[ -n $rtt ]] || { say "udp: no ping -U reply on link 1: skipped"; return 0; }
  bg srv udp.targets node "$UDPBENCH" --serve 127.0.0.1:9005,9006
  local tpid=$LASTPID
  sleep 0.8
  for d in 0 1; do
    tag=udp-single; [[ $d == 1 ]] && tag=udp-duplicate
    say "$tag (link 1 ping -U median RTT $rtt ms)"
    ob=$(others)
    udp_plait_up "$tag" "$n" "$d"
    echo "[$(date +%T)] (nb-cli) bench-udp.mjs: $NB blackhole 1 at 3 s, $NB restore 1 at 7 s of the blackhole round" >> "$CMDLOG"
    fg cli 150 "$tag.run" node "$UDPBENCH" --socks 127.0.0.1:1080 --udp-echo 127.0.0.1:9005 --bulk 127.0.0.1:8006 \
      --fastest-rtt "$rtt" --label "$tag" --stats http://127.0.0.1:7100/stats --out "$RAW/$tag.json" \
      --cut "'$NB' blackhole 1 >> '$RAW/$tag.events.log' 2>&1" --restore "'$NB' restore 1 >> '$RAW/$tag.events.log' 2>&1" \
      || say "$tag: bench-udp.mjs failed (see $RAW/$tag.run.log)"
    "$NB" restore 1 >/dev/null 2>&1   # whatever happened above, link 1 is back for what follows
    [[ $ob == true ]] || ob=$(others)
    plait_down
    [[ -s $RAW/$tag.json ]] && man "{\"kind\":\"udp\",\"spec\":\"$spec\",\"duplicate\":$([[ $d == 1 ]] && echo true || echo false),\"file\":\"$tag.json\",\"pingIdle\":\"udp.ping-idle.log\",\"link1PingMedianMs\":$rtt,\"plaitAliveAtEnd\":$PALIVE,\"otherBenchRunning\":$ob,\"cpu\":$PCPU}"
    sleep 1.5
  done
  stop "$tpid"
}
# udp_report: the udp entries of the manifest into OUTJSON (.udp) and a table on stdout
udp_report() {
  grep -q '"kind":"udp"' "$MAN" 2>/dev/null || return 0
  node -e '
const fs = require("fs"); const [, man, dir, out] = process.argv;
const rows = fs.readFileSync(man, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)).filter((m) => m.kind === "udp")
  .map((m) => ({ ...m, result: JSON.parse(fs.readFileSync(`${dir}/${m.file}`, "utf8")) }));
let o = {}; try { o = JSON.parse(fs.readFileSync(out, "utf8")); } catch {}
o.udp = rows; fs.writeFileSync(out, JSON.stringify(o, null, 2) + "\n");
const w = (s, n) => String(s ?? "-").padEnd(n);
console.log("\nSOCKS5 UDP echo, 160 B every 20 ms (ms; ratios to link 1 ping -U median RTT); blackhole: link 1 dropped 3..7 s of a 10 s stream");
console.log(w("links", 26) + w("mode", 11) + w("RTT", 7) + w("idle med/p99", 16) + w("download med/p99", 19) + w("Mbit/s", 8) + w("p99/RTT", 9) + w("lost", 10) + w("late", 6) + w("gap", 7) + w("first after cut", 16));
for (const m of rows) {
  const r = m.result, b = r.blackhole;
  console.log(w(m.spec, 26) + w(m.duplicate ? "duplicate" : "single", 11) + w(m.link1PingMedianMs, 7) + w(`${r.idle.medianMs}/${r.idle.p99Ms}`, 16)
    + w(`${r.underDownload.medianMs}/${r.underDownload.p99Ms}`, 19) + w(r.underDownload.downloadMbit, 8) + w(r.ratios.udpP99UnderDownloadOverFastestRtt, 9)
    + w(`${b.lost} (${b.lostPct}%)`, 10) + w(b.lateOver500ms, 6) + w(b.longestGapMs, 7) + w(b.firstReplyAfterCutMs, 16));
}
' "$MAN" "$RAW" "$OUTJSON"
}

# ------------------------------------------------------------------ main
CC="?"
GITREV=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo "?")
GITDIRTY=$(cd "$REPO" && git status --porcelain --untracked-files=no 2>/dev/null | wc -l)
say "plait testbed bench: specs=[${SPECLISTS[*]}] t=${SECS}s warmup=${WARM}s runs=$RUNS dirs=$DIRS parts=$PARTS scheduler=${SCHED:-default} raw=$RAW"
say "plait at $GITREV ($GITDIRTY modified tracked files), dist newest file $DISTTIME, dist sha256 $DISTSUM, running $([[ -n $SNAP ]] && echo "a snapshot in $SNAP" || echo "the live build")"
for si in "${!SPECLISTS[@]}"; do
  read -r -a SPECS <<< "${SPECLISTS[$si]}"
  SPECSTR="${SPECS[*]}"
  N=${#SPECS[@]}
  [[ $N -ge 2 ]] || { say "skipping '$SPECSTR': need at least 2 links"; continue; }
  RAW0=$RAW; RAW="$RAW0/spec$((si+1))"; mkdir -p "$RAW"
  bed_up "${SPECS[@]}"
  [[ $IPERF == 1 ]] && has "$PARTS" throughput && iperf_srv_up
  if has "$PARTS" throughput; then
    for ((r=1; r<=RUNS; r++)); do
      for d in ${DIRS//,/ }; do measure_throughput "$SPECSTR" "$N" "$r" "$d"; done
    done
  fi
  [[ -n ${IPERF_PID:-} ]] && { stop "$IPERF_PID"; IPERF_PID=""; }
  has "$PARTS" failover && measure_failover plait "$SPECSTR" "$N"
  has "$PARTS" kfailover && measure_failover mptcp "$SPECSTR" "$N"
  has "$PARTS" latency && measure_latency "$SPECSTR" "$N"
  has "$PARTS" startup && measure_startup "$SPECSTR" "$N"
  if has "$PARTS" slowlink; then
    for d in ${DIRS//,/ }; do measure_slowlink plait "$d" "$SPECSTR" "$N"; measure_slowlink mptcp "$d" "$SPECSTR" "$N"; done
  fi
  has "$PARTS" udp && measure_udp "$SPECSTR" "$N"
  # make manifest paths relative to RAW0
  sed -i "s#\"\\([a-z0-9.-]*\\.\\(json\\|jsonl\\|log\\)\\)\"#\"spec$((si+1))/\\1\"#g" "$MAN"
  cat "$MAN" >> "$RAW0/manifest.all"; : > "$MAN"
  [[ ${#PIDS[@]} -gt 0 ]] && stop "${PIDS[@]}"; PIDS=()
  bed_down
  if has "$PARTS" anchor; then
    say "anchor: $TB/bench_failover.sh -n 1 -t $FOSECS -b $((FOSECS/3)) -u $((2*FOSECS/3)) -R $SPECSTR"
    echo "[$(date +%T)] $TB/bench_failover.sh -n 1 -t $FOSECS -b $((FOSECS/3)) -u $((2*FOSECS/3)) -R -o $RAW/anchor-failover $SPECSTR" >> "$CMDLOG"
    "$TB/bench_failover.sh" -n 1 -t "$FOSECS" -b $((FOSECS/3)) -u $((2*FOSECS/3)) -R -o "$RAW/anchor-failover" "${SPECS[@]}" > "$RAW/anchor-failover.txt" 2>&1 &
    ANCHOR_PID=$!; wait "$ANCHOR_PID"; ANCHOR_PID=""
    echo "{\"kind\":\"anchor\",\"spec\":\"$SPECSTR\",\"name\":\"bench_failover.sh\",\"file\":\"spec$((si+1))/anchor-failover.txt\"}" >> "$RAW0/manifest.all"
  fi
  if [[ $ANCHOR_MPTCP == 1 ]]; then
    for d in ${DIRS//,/ }; do
      rf=""; [[ $d == download ]] && rf=-R
      say "anchor: $TB/bench_mptcp.sh -n 1 -t $SECS $rf $SPECSTR"
      echo "[$(date +%T)] $TB/bench_mptcp.sh -n 1 -t $SECS $rf -o $RAW/anchor-mptcp-$d $SPECSTR" >> "$CMDLOG"
      "$TB/bench_mptcp.sh" -n 1 -t "$SECS" $rf -o "$RAW/anchor-mptcp-$d" "${SPECS[@]}" > "$RAW/anchor-mptcp-$d.txt" 2>&1 &
      ANCHOR_PID=$!; wait "$ANCHOR_PID"; ANCHOR_PID=""
      echo "{\"kind\":\"anchor\",\"spec\":\"$SPECSTR\",\"name\":\"bench_mptcp.sh $d\",\"file\":\"spec$((si+1))/anchor-mptcp-$d.txt\"}" >> "$RAW0/manifest.all"
    done
  fi
  RAW=$RAW0
done
mv "$RAW/manifest.all" "$MAN" 2>/dev/null || : > "$MAN"

node -e '
const [,out,...kv]=process.argv; const o={};
const num=new Set(["secs","warmupSecs","runs","failoverSecs","plaitDirtyFiles"]);
for (let i=0;i<kv.length;i+=2){ const v=kv[i+1]; o[kv[i]]= num.has(kv[i])? Number(v): v; }
o.specLists=o.specLists.split("|"); o.commandsLog=o.raw+"/commands.log";
require("fs").writeFileSync(out, JSON.stringify(o,null,2));
' "$RAW/meta.json" testbed available timestamp "$TS" secs "$SECS" warmupSecs "$WARM" runs "$RUNS" failoverSecs "$FOSECS" \
  specLists "$(IFS='|'; echo "${SPECLISTS[*]}")" scheduler "${SCHED:-default}" cc "$CC" plaitCommit "$GITREV" plaitDirtyFiles "$GITDIRTY" \
  kernel "$(uname -r)" node "$(node --version)" raw "$RAW" plaitDistSha256 "$DISTSUM" plaitDistNewestFile "$DISTTIME" plaitBuild "$([[ -n $SNAP ]] && echo "snapshot of packages/*/dist taken at start" || echo live)" \
  window "goodput = bytes delivered in [${WARM} s, ${SECS} s) after the receiver's first byte (first ${WARM} s of ramp-up excluded), same window for single-path TCP, kernel MPTCP and plait"

node "$TOOLS" report --dir "$RAW" --out "$OUTJSON"
udp_report
