#!/usr/bin/env bash
# The live link page (issue 8 item 6) in a real browser: headless Chromium (Debian's `chromium`)
# loads GET / from the stats port of a running `plait demo` (a client bonding 127.0.0.1 and
# 127.0.0.2 to a server) while a download crosses the tunnel, and
#  - takes a screenshot (the PNG must exist and be more than a blank page's few KiB),
#  - dumps the DOM after the page's script ran, which must show both subflows' rows, both
#    active, at least one of them receiving (a non-zero download rate), and the live marker
#    saying the data came over the /live WebSocket (not the /stats polling fallback).
#
#   bash test/system/live-page.sh [SCREENSHOT.png]   (default: a temporary file, removed)
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "[live-page] FAIL: $*" >&2; exit 1; }
command -v chromium >/dev/null || fail "chromium missing (apt-get install chromium)"
command -v curl >/dev/null || fail "curl missing"

tmp=$(mktemp -d)
demo_pid=
curl_pid=
cleanup() {
  [ -n "$curl_pid" ] && kill "$curl_pid" 2>/dev/null
  [ -n "$demo_pid" ] && kill "$demo_pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
shot=${1:-$tmp/live.png}

node packages/cli/bin/plait.js demo --interval 60 --duration 30 >"$tmp/demo.out" 2>&1 &
demo_pid=$!
for _ in $(seq 100); do
  grep -q 'curl --socks5-hostname' "$tmp/demo.out" && break
  kill -0 "$demo_pid" 2>/dev/null || fail "plait demo exited:"$'\n'"$(cat "$tmp/demo.out")"
  sleep 0.1
done
port=$(sed -n 's#.*curl -s http://127.0.0.1:\([0-9]*\)/stats.*#\1#p' "$tmp/demo.out")
socks=$(sed -n 's#^  SOCKS5 proxy: *\(127.0.0.1:[0-9]*\).*#\1#p' "$tmp/demo.out")
content=$(grep -o 'http://127.0.0.1:[0-9]*/file' "$tmp/demo.out" | head -1)
[ -n "$port" ] && [ -n "$socks" ] && [ -n "$content" ] || fail "could not read the demo's addresses:"$'\n'"$(cat "$tmp/demo.out")"

# GET / over plain HTTP first: the headers the page relies on.
curl -sS -D "$tmp/headers" -o "$tmp/page.html" "http://127.0.0.1:$port/"
grep -qi '^content-type: text/html' "$tmp/headers" || fail "GET / is not text/html"
grep -qi "^content-security-policy: default-src 'none'" "$tmp/headers" || fail "GET / has no strict CSP"
grep -qi '^x-content-type-options: nosniff' "$tmp/headers" || fail "GET / has no nosniff"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: evil.example' "http://127.0.0.1:$port/")
[ "$code" = 403 ] || fail "GET / with a foreign Host answered $code, not 403"

# A download through the tunnel (16 GiB: it runs until killed), so the links move while the page watches.
curl -s --socks5-hostname "$socks" -o /dev/null "$content?size=17179869184" &
curl_pid=$!
sleep 1

# Real time, not --virtual-time-budget: the figures arrive pushed over /live once a second, and
# virtual time would run the page's timers (its "/live went quiet" fallback) ahead of them.
node test/system/chromium-page.mjs "http://127.0.0.1:$port/" --wait 3500 --size 1200x800 --screenshot "$shot" --dom "$tmp/dom.html" \
  2>"$tmp/chromium.log" || fail "headless chromium failed:"$'\n'"$(tail -5 "$tmp/chromium.log")"
[ -f "$shot" ] || fail "no screenshot written"
size=$(stat -c %s "$shot")
[ "$size" -gt 20000 ] || fail "screenshot is only $size bytes (a blank page?)"

# One row per subflow: <tr class="sf row-ok" data-subflow="N"> ... </tr>, rendered by the page's script.
rows=$(tr -d '\n' <"$tmp/dom.html" | grep -o '<tr class="sf [^"]*" data-subflow="[0-9]*">.*</tr>' | sed 's#</tr>#&\n#g' | grep -o '<tr class="sf.*' || true)
grep -q 'data-subflow="1"' <<<"$rows" || fail "no row for subflow 1 in the rendered page:"$'\n'"$(head -c 3000 "$tmp/dom.html")"
grep -q 'data-subflow="2"' <<<"$rows" || fail "no row for subflow 2 in the rendered page"
[ "$(grep -c '● active' <<<"$rows")" -ge 2 ] || fail "both subflows should be active:"$'\n'"$rows"
grep -q '↓ [1-9][0-9.]* [kMG]bit/s' <<<"$rows" || fail "no subflow shows a download rate during the transfer:"$'\n'"$rows"
grep -q '● live' "$tmp/dom.html" || fail "the page does not say it is live"
# The figures came pushed over the /live WebSocket, not by the /stats polling fallback.
grep -q 'data-via="websocket"' "$tmp/dom.html" || fail "the page did not get its data over /live:"$'\n'"$(grep -o '<span class="conn[^<]*' "$tmp/dom.html")"
echo "[live-page] ok: GET / headers and Host check, screenshot $size bytes, DOM shows subflows 1 and 2 active and moving, pushed over /live"
