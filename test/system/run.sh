#!/usr/bin/env bash
# `npm run test:system`: the deployment checks (issue 8 items 2, 4, 5, 6). They need curl, systemd
# (systemd-analyze), docker-compose and chromium from Debian; .ci/run installs them when missing. They reuse
# the built tree (`npm pack` runs `tsc -b`, a no-op after `npm test`).
#   1. pack-install.mjs    npm pack -> one tarball -> npm install -g --prefix EMPTY --offline;
#                          the installed plait: --help, keygen, server + client through SOCKS5,
#                          with and without koffi
#   2. systemd-verify.sh   deploy/systemd units: systemd-analyze verify (ExecStart pointed at the
#                          plait installed in 1) and security, hardening, capabilities, flags
#   3. compose-config.sh   docker-compose config, and the Dockerfile's install path
#   4. live-page.sh        headless Chromium renders GET / of a `plait demo` during a download:
#                          screenshot, and the DOM shows both subflows active and moving
#   5. router-netns.sh     router mode in network namespaces (nftables, iproute2, iptables):
#                          router-setup's rules checked and loaded, a LAN curl carried through
#                          --redirect over two uplinks with forwarding off, loop drop, bypass, undo
#   6. scale-out.system.ts deploy/haproxy.cfg in a real HAProxy before three instances, a dozen
#                          two-subflow clients; kill one, drain one (needs haproxy)
#   7. ws-nginx.sh         WebSocket subflows: nginx terminates TLS (a CA made with openssl) in front of
#                          `plait server --listen ws://...`; a two-path wss:// client with --ca moves a
#                          file intact through SOCKS5; without --ca the certificate is refused
#   8. users-wire.sh       tcpdump (root) on lo around a `plait server --users`: a session, refusals and a
#                          revocation; the capture never holds a user name (issue 12)
set -uo pipefail
cd "$(dirname "$0")/../.."
start=$SECONDS
failed=()
log=$(mktemp)
prefix=
cleanup() { [ -n "$prefix" ] && rm -rf "$(dirname "$prefix")"; rm -f "$log"; }
trap cleanup EXIT

node test/system/pack-install.mjs --keep | tee "$log"
if [ "${PIPESTATUS[0]}" = 0 ]; then
  prefix=$(sed -n 's/^PLAIT_PREFIX=//p' "$log")
else
  failed+=(pack-install)
fi
# Without an installed copy (pack failed) the unit check still runs, against the repository's CLI.
bash test/system/systemd-verify.sh ${prefix:+"$prefix/bin/plait"} || failed+=(systemd-verify)
bash test/system/compose-config.sh || failed+=(compose-config)
bash test/system/live-page.sh || failed+=(live-page)
bash test/system/router-netns.sh || failed+=(router-netns)
npx vitest run --config test/system/vitest.system.config.ts || failed+=(scale-out)
bash test/system/ws-nginx.sh || failed+=(ws-nginx)
bash test/system/users-wire.sh || failed+=(users-wire)

if [ ${#failed[@]} -gt 0 ]; then
  echo "test:system: FAILED: ${failed[*]} ($((SECONDS - start)) s)" >&2
  exit 1
fi
echo "test:system: pack-install, systemd-verify, compose-config, live-page, router-netns, scale-out, ws-nginx, users-wire passed in $((SECONDS - start)) s"
