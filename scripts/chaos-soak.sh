#!/usr/bin/env bash
# chaos-soak.sh - chaos soak of plait on the packet-level netns testbed (root).
#
#   scripts/chaos-soak.sh [-F] [-B] [-L] [--minutes 8] [--faults 520] [--seed 1] [options]
#     --links "SPEC ..."   link specs for netbed.sh up (default "40mbit:10ms 20mbit:30ms 10mbit:60ms")
#     --minutes M          soak length (default 8); transfers start until then, then drain
#     --faults N           faults injected over the run (default 520), seed-fixed schedule
#     --seed S             schedule and transfer-size seed (default 1); the schedule is printed first
#     --concurrency C      bulk transfers at a time, half downloads, half uploads (default 6)
#     --short K            extra workers doing short transfers (16 KiB-1 MiB; each opens a new SOCKS
#                          connection every second, <= 20 in flight; half each way) so that new
#                          streams also open during outages (default 2)
#     --min-mib / --max-mib  transfer sizes, log-uniform (default 1 / 64)
#     --max-outage S       longest all-links blackhole (default 20; must stay below the 30 s grace)
#     --outage-gap S       least time between two all-links-down spans (default 10)
#     --drain S            time the last transfers get after the end (default 300), then lost
#     --strict             also fail on SOCKS refusals during a total outage
#     --no-print-schedule  print only the schedule summary
#     --keep-bed           leave the netbed up at the end (debugging)
#   -F  take an existing netbed down first (otherwise a bed already up = busy, exit 2)
#   -B  rebuild plait first (npx tsc -b); by default only if dist/ is missing
#   -L  run the live build in packages/*/dist (default: a snapshot taken at the start, so a
#       rebuild by someone else mid-run cannot mix two versions)
#   -R REV  run a clean build of git revision REV (e.g. HEAD): git archive into /tmp, npx tsc -b
#       there; for when the working tree is mid-edit and does not build
#   env: PLAIT_TESTBED (default: ../shared/testbed next to the repository), NETBED_BIN (/tmp/netbed-bin)
#   dry run of the schedule only: node scripts/chaos-soak.mjs schedule --seed S --minutes M --faults N
#
# Faults (kinds): blackhole-1/-2/-all (netbed.sh blackhole; all-links ones 2..max-outage s),
# flap (ip link set down/up on either end, 0.2-2 s), rate-drop (tbf rate to 4-30 % for 2-10 s),
# reset-ss (ss -K on one link's subflow, 1-3 times, either namespace), reset-reject (iptables
# REJECT --reject-with tcp-reset on one link for 0.5-3 s, either namespace).
# Transfers: curl through the client's SOCKS5 proxy to a target in nb-srv (127.0.0.1:9080),
# downloads and uploads, sha256-checked. Output: a summary table, then one JSON line on
# stdout; run files in bench-results/chaos-<timestamp>/. Exit 1 if any transfer was lost or
# corrupted, the session restarted, or a plait process died; 2 if the testbed is unavailable.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
TB="${PLAIT_TESTBED:-$HERE/../../shared/testbed}"
export NETBED_BIN="${NETBED_BIN:-/tmp/netbed-bin}"
NB="$TB/netbed.sh"
TS="$(date +%Y%m%d-%H%M%S)"
RUN="$REPO/bench-results/chaos-$TS"

FORCE=0 BUILD=0 LIVE=0 REV="" PASS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    -F) FORCE=1;; -B) BUILD=1;; -L) LIVE=1;;
    -R) REV=${2:?-R needs a git revision}; shift;;
    -h|--help) awk 'NR > 1 && /^set -uo/ { exit } NR > 1' "$0"; exit 0;;
    *) PASS+=("$1");;
  esac
  shift
done
unavailable() { echo "chaos-soak: the testbed is unavailable: $1" >&2; exit 2; }

[[ $EUID -eq 0 ]] || unavailable "not root (network namespaces, tc and nftables need it)"
[[ -x $NB ]] || unavailable "$NB not found (set PLAIT_TESTBED)"
TB="$(cd "$TB" && pwd)"; NB="$TB/netbed.sh"
command -v node >/dev/null || unavailable "node not found"
command -v curl >/dev/null || unavailable "curl not found"
need_setup=0
[[ -x $NETBED_BIN/delayq ]] || need_setup=1
for c in ss nft iptables tc; do command -v "$c" >/dev/null || need_setup=1; done
if [[ $need_setup == 1 ]]; then
  echo "chaos-soak: delay line or tools missing: running $TB/setup.sh" >&2
  mkdir -p "$RUN"
  bash "$TB/setup.sh" > "$RUN/setup.log" 2>&1 || unavailable "setup.sh failed (log: $RUN/setup.log)"
fi
if ip netns list 2>/dev/null | grep -qwE 'nb-cli|nb-srv'; then
  if [[ $FORCE == 1 ]]; then "$NB" down >/dev/null 2>&1 || true
  else unavailable "testbed busy: a netbed is already up (another benchmark?); rerun with -F to take it down"; fi
fi
if [[ -z $REV ]] && [[ $BUILD == 1 || ! -f $REPO/packages/cli/dist/main.js ]]; then
  echo "chaos-soak: building plait (npx tsc -b)" >&2
  (cd "$REPO" && npx tsc -b) || { echo "chaos-soak: plait does not build (npx tsc -b failed)" >&2; exit 2; }
fi
mkdir -p "$RUN"

# shellcheck source=lib/dist-snapshot.sh
source "$HERE/lib/dist-snapshot.sh"   # distsum, snapshot_dist
# default: a private copy of the built packages (as bench-testbed.sh; third-party node_modules are linked)
SNAP="" PLAIT="$REPO/packages/cli/bin/plait.js"
if [[ -n $REV ]]; then
  # a clean export of REV, built on its own (third-party node_modules linked from the repository)
  SHA=$(git -C "$REPO" rev-parse --verify "$REV^{commit}") || { echo "chaos-soak: no such revision $REV" >&2; exit 2; }
  SNAP="/tmp/plait-chaos-rev-$TS"
  mkdir -p "$SNAP/node_modules/@plait"
  git -C "$REPO" archive "$SHA" | tar -x -C "$SNAP" || { echo "chaos-soak: git archive $REV failed" >&2; exit 2; }
  for p in "$SNAP"/packages/*/; do p=$(basename "$p"); ln -s "../../packages/$p" "$SNAP/node_modules/@plait/$p"; done
  for e in "$REPO"/node_modules/* "$REPO"/node_modules/.bin; do
    [[ $(basename "$e") == @plait ]] || ln -s "$e" "$SNAP/node_modules/$(basename "$e")"
  done
  echo "chaos-soak: building $REV (${SHA:0:10}) in $SNAP" >&2
  (cd "$SNAP" && npx tsc -b) > "$RUN/build.log" 2>&1 || { cat "$RUN/build.log" >&2; echo "chaos-soak: $REV does not build" >&2; rm -rf "$SNAP"; exit 2; }
  PLAIT="$SNAP/packages/cli/bin/plait.js"
  BUILDID="${SHA:0:10} (clean build of $REV), dist $(distsum "$SNAP")"
elif [[ $LIVE == 0 ]]; then
  SNAP="/tmp/plait-chaos-snap-$TS"
  snapshot_dist "$REPO" "$SNAP"
fi
[[ -n ${BUILDID:-} ]] || BUILDID="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD -- packages 2>/dev/null || echo '+uncommitted edits'), dist $(distsum "${SNAP:-$REPO}")"
# the build must load as a whole (a dist caught mid-rebuild fails on a missing export)
for role in client server; do
  if ! out=$(node "$PLAIT" "$role" --help 2>&1) && grep -qE 'SyntaxError|Cannot find module|ERR_MODULE' <<<"$out"; then
    echo "chaos-soak: the plait build does not load ($role): $(grep -m1 -E 'SyntaxError|Cannot find|ERR_' <<<"$out")" >&2
    echo "chaos-soak: rebuild (npx tsc -b, or -B) or run a committed revision with -R HEAD" >&2
    [[ -n $SNAP ]] && rm -rf "$SNAP"; exit 2
  fi
done

DRIVER=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $DRIVER ]] && kill -0 "$DRIVER" 2>/dev/null; then
    kill -TERM "$DRIVER" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$DRIVER" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DRIVER" 2>/dev/null
  fi
  # backstop: the driver takes the bed down itself; only if it could not
  if ip netns list 2>/dev/null | grep -qwE 'nb-cli|nb-srv' && [[ " ${PASS[*]:-} " != *" --keep-bed "* ]]; then "$NB" down >/dev/null 2>&1 || true; fi
  [[ -n $SNAP && -d $SNAP ]] && rm -rf "$SNAP"
  exit $rc
}
trap cleanup EXIT
trap 'echo "chaos-soak: interrupted" >&2; exit 130' INT TERM

node "$HERE/chaos-soak.mjs" run --plait "$PLAIT" --testbed "$TB" --out "$RUN" --build "$BUILDID" "${PASS[@]}" &
DRIVER=$!
wait "$DRIVER"
rc=$?
DRIVER=""
exit $rc
