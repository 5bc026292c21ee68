#!/usr/bin/env bash
# Checks deploy/systemd/*.service (issue 8 item 4) without a running systemd:
#  - `systemd-analyze verify` on a copy whose ExecStart points at PLAIT_BIN (the plait installed
#    by pack-install.mjs, or a stub), with no output at all allowed (verify exits 0 on warnings
#    such as unknown keys or bad values, so any line it prints fails the check);
#  - `systemd-analyze security --offline=yes` exposure at most 2.5 (of 10);
#  - the hardening the README promises is there (grep), the client has CAP_NET_RAW and nothing
#    else, the server no capability;
#  - every flag in ExecStart and in client.env.example is one `plait server|client --help` lists.
#
#   bash test/system/systemd-verify.sh [PLAIT_BIN]
set -euo pipefail
cd "$(dirname "$0")/../.."
UNITS=deploy/systemd
fail() { echo "[systemd] FAIL: $*" >&2; exit 1; }
command -v systemd-analyze >/dev/null || fail "systemd-analyze missing (apt-get install systemd)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=${1:-}
if [ -z "$bin" ]; then
  # No installed copy given: the repository's CLI (flags check) behind a stub path.
  mkdir -p "$tmp/bin"
  printf '#!/bin/sh\nexec node %q "$@"\n' "$PWD/packages/cli/bin/plait.js" > "$tmp/bin/plait"
  chmod 755 "$tmp/bin/plait"
  bin="$tmp/bin/plait"
fi
[ -x "$bin" ] || fail "$bin is not executable"

for unit in plait-server plait-client; do
  f="$UNITS/$unit.service"
  [ -f "$f" ] || fail "$f missing"
  grep -q '^ExecStart=/usr/local/bin/plait ' "$f" || fail "$f: ExecStart must run /usr/local/bin/plait (where npm install -g --prefix /usr/local puts it)"
  for want in 'DynamicUser=yes' 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' \
      'LoadCredential=secret:/etc/plait/secret' 'Restart=on-failure' 'SystemCallFilter=@system-service'; do
    grep -qx "$want" "$f" || fail "$f: no '$want'"
  done
  grep -q '^ExecStart=.* --secret-file %d/secret' "$f" || fail "$f: ExecStart must read the secret with --secret-file %d/secret"
  if grep -q -- '--secret \|PLAIT_SECRET' "$f"; then fail "$f: the secret must come through LoadCredential only"; fi

  # systemd-analyze verify needs the ExecStart binary to exist: verify a copy pointing at $bin.
  sed "s|/usr/local/bin/plait|$bin|" "$f" > "$tmp/$unit.service"
  out=$(cd "$tmp" && systemd-analyze verify "$unit.service" 2>&1) || fail "systemd-analyze verify $f:"$'\n'"$out"
  [ -z "$out" ] || fail "systemd-analyze verify $f printed warnings:"$'\n'"$out"
  exposure=$(cd "$tmp" && systemd-analyze security --offline=yes --threshold=25 "$unit.service" 2>&1) \
    || fail "systemd-analyze security $f: exposure above 2.5:"$'\n'"$(echo "$exposure" | tail -1)"
  echo "[systemd] $f: verify clean; $(echo "$exposure" | tail -1 | sed 's/^→ //')"
done

grep -qx 'CapabilityBoundingSet=' "$UNITS/plait-server.service" || fail "plait-server.service must drop every capability"
grep -qx 'AmbientCapabilities=' "$UNITS/plait-server.service" || fail "plait-server.service must grant no capability"
grep -qx 'CapabilityBoundingSet=CAP_NET_RAW' "$UNITS/plait-client.service" || fail "plait-client.service: CapabilityBoundingSet must be CAP_NET_RAW only (--via: SO_BINDTODEVICE)"
grep -qx 'AmbientCapabilities=CAP_NET_RAW' "$UNITS/plait-client.service" || fail "plait-client.service: AmbientCapabilities must be CAP_NET_RAW only"
[ "$(grep -c '^CapabilityBoundingSet=\|^AmbientCapabilities=' "$UNITS/plait-client.service")" = 2 ] || fail "plait-client.service: capabilities set more than once"

# Every flag the units and the example environment file pass must be one plait knows.
check_flags() { # role, text with flags
  local role=$1 text=$2 help flag
  help=$("$bin" "$role" --help)
  for flag in $(grep -o -- '--[a-z][a-z-]*' <<<"$text" | sort -u); do
    grep -q -- "$flag[ ,<]" <<<"$help" || fail "plait $role has no $flag (used in $UNITS)"
  done
}
check_flags server "$(grep '^ExecStart=' "$UNITS/plait-server.service")"
check_flags client "$(grep '^ExecStart=' "$UNITS/plait-client.service"; grep -v '^#' "$UNITS/client.env.example")"
grep -q '^PLAIT_CLIENT_ARGS=' "$UNITS/client.env.example" || fail "client.env.example must set PLAIT_CLIENT_ARGS"
grep -q '^ExecStart=.*\$PLAIT_CLIENT_ARGS$' "$UNITS/plait-client.service" || fail "plait-client.service must pass \$PLAIT_CLIENT_ARGS (word-split)"
echo "[systemd] ok: flags in the units and client.env.example are all known to $bin"
