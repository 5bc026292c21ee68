#!/usr/bin/env bash
# Checks docker-compose.yml and the Dockerfile (issue 8 item 5) without a Docker engine:
#  - `docker-compose config` (Debian's docker-compose v1, validates offline) accepts the file,
#    with and without the client's variables, printing no warnings;
#  - the resolved file has what the README promises: a server built from the Dockerfile with a
#    restart policy, port 7000, the secret as a compose secret read with --secret-file, the stats
#    port on loopback only; a client (profile "client") with network_mode: host;
#  - the Dockerfile installs plait the way README's install does (npm pack, npm install -g
#    --offline, ENTRYPOINT plait), and copies only paths that exist and .dockerignore keeps.
#
#   bash test/system/compose-config.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "[compose] FAIL: $*" >&2; exit 1; }
command -v docker-compose >/dev/null || fail "docker-compose missing (apt-get install docker-compose)"
# docker-compose v1 is Python; its own interpreter has PyYAML (a pyenv python3 on PATH may not).
py=$(head -1 "$(command -v docker-compose)" | sed -n 's/^#! *//p' | awk '{print $1}')
[ -x "${py:-}" ] || py=/usr/bin/python3

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Run from a clean environment so a caller's PLAIT_* variables do not hide a missing default.
compose() { env -u PLAIT_CLIENT_ARGS -u PLAIT_SECRET_FILE -u COMPOSE_FILE -u COMPOSE_PROFILES "$@"; }

compose docker-compose -f docker-compose.yml config >"$tmp/plain.yml" 2>"$tmp/plain.err" \
  || fail "docker-compose config:"$'\n'"$(cat "$tmp/plain.err")"
[ ! -s "$tmp/plain.err" ] || fail "docker-compose config warned:"$'\n'"$(cat "$tmp/plain.err")"
compose PLAIT_CLIENT_ARGS="--server vps.example.net:7000 --via eth0 --via wlan0 --socks 192.168.1.1:1080" \
  PLAIT_SECRET_FILE=/etc/plait/secret docker-compose -f docker-compose.yml --profile client config >"$tmp/client.yml" 2>"$tmp/client.err" \
  || fail "docker-compose --profile client config:"$'\n'"$(cat "$tmp/client.err")"
[ ! -s "$tmp/client.err" ] || fail "docker-compose --profile client config warned:"$'\n'"$(cat "$tmp/client.err")"

"$py" - "$tmp/plain.yml" "$tmp/client.yml" <<'EOF'
import shlex, sys, yaml

def fail(msg):
    print(f"[compose] FAIL: {msg}", file=sys.stderr)
    sys.exit(1)

plain = yaml.safe_load(open(sys.argv[1]))
withclient = yaml.safe_load(open(sys.argv[2]))
for doc in (plain, withclient):
    services = doc.get("services", {})
    if set(services) != {"server", "client"}:
        fail(f"services are {sorted(services)}, want server and client")

srv = plain["services"]["server"]
if not srv.get("build"):
    fail("server is not built from the Dockerfile (build:)")
if srv.get("restart") not in ("always", "unless-stopped", "on-failure"):
    fail(f"server restart policy is {srv.get('restart')!r}")
ports = srv.get("ports", [])
published = [p for p in ports if isinstance(p, dict) and p.get("target") == 7000 and int(p.get("published", 0)) == 7000]
if not published:
    fail(f"server does not publish port 7000: {ports}")
stats = [p for p in ports if isinstance(p, str) and ":9100" in p]
if any(not p.startswith("127.0.0.1:") for p in stats):
    fail(f"the stats port must be published on 127.0.0.1 only: {stats}")
cmd = srv.get("command")
if not isinstance(cmd, list) or cmd[0] != "server" or "--secret-file" not in cmd:
    fail(f"server command must be ['server', ..., '--secret-file', FILE]: {cmd}")
if cmd[cmd.index("--secret-file") + 1] != "/run/secrets/plait_secret":
    fail("server must read the compose secret /run/secrets/plait_secret")
if "plait_secret" not in [s.get("source") if isinstance(s, dict) else s for s in srv.get("secrets", [])]:
    fail("server does not get the plait_secret secret")
if "plait_secret" not in plain.get("secrets", {}):
    fail("no top-level plait_secret secret")
if "--secret" in cmd or "PLAIT_SECRET" in (srv.get("environment") or {}):
    fail("the secret must come through the compose secret only")

cli = withclient["services"]["client"]
if cli.get("network_mode") != "host":
    fail("client must use network_mode: host")
if "client" not in cli.get("profiles", []):
    fail("client must be in the 'client' profile (a VPS runs `up -d server` alone)")
if cli.get("restart") not in ("always", "unless-stopped", "on-failure"):
    fail(f"client restart policy is {cli.get('restart')!r}")
ccmd = cli.get("command")
argv = shlex.split(ccmd) if isinstance(ccmd, str) else ccmd
if argv[:3] != ["client", "--secret-file", "/run/secrets/plait_secret"] or "--server" not in argv or "--via" not in argv:
    fail(f"client command with PLAIT_CLIENT_ARGS set resolves to {argv}")
if withclient["secrets"]["plait_secret"].get("file") != "/etc/plait/secret":
    fail("PLAIT_SECRET_FILE does not choose the secret file")
print(f"[compose] docker-compose config: server (build ., restart {srv['restart']}, 7000, secret file) and client (host network, profile client): ok")
EOF

# The Dockerfile: the same install path as the README, and a build context that has what it copies.
df=Dockerfile
grep -q '^FROM node:20' "$df" || fail "$df: base image must be node:20 (engines: node >=20.19)"
grep -q 'npm ci' "$df" || fail "$df: the build stage must npm ci (which builds)"
grep -q 'npm pack' "$df" || fail "$df: must build the tarball with npm pack"
grep -q 'npm install -g --offline' "$df" || fail "$df: must install the tarball with npm install -g --offline"
grep -qx 'ENTRYPOINT \["plait"\]' "$df" || fail "$df: ENTRYPOINT must be the installed plait"
grep -qx 'USER node' "$df" || fail "$df: must not run as root"
# Every source of a COPY without --from must exist in the context and not be dockerignored.
while read -r src; do
  [ -e "$src" ] || fail "$df copies $src, which does not exist"
  while read -r pat; do
    case "$pat" in ''|'#'*) continue ;; esac
    # shellcheck disable=SC2254
    case "$src" in $pat|$pat/*) fail "$df copies $src, but .dockerignore excludes it ($pat)" ;; esac
  done < .dockerignore
done < <(grep '^COPY ' "$df" | grep -v -- '--from' | sed 's/^COPY //' | awk '{for (i = 1; i < NF; i++) print $i}')
# The tarball's "files" must all be in the context too (npm pack in the build stage needs them).
node -e '
const p = require("./package.json");
const copied = require("fs").readFileSync("Dockerfile", "utf8").match(/^COPY (?!--from).*$/gm).join(" ");
const missing = p.files.filter((f) => !copied.split(/\s+/).some((w) => w === f || w === `${f}/` || w === `./${f}`));
if (missing.length) { console.error(`[compose] FAIL: Dockerfile does not copy ${missing.join(", ")} (in package.json "files")`); process.exit(1); }
'
echo "[compose] ok: Dockerfile builds with npm ci + npm pack and installs the tarball like the README"
