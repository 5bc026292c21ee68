# Sourced by the testbed scripts (bench-testbed.sh, chaos-soak.sh).
#
# distsum DIR: a short hash of the built packages under DIR.
# snapshot_dist REPO SNAP: a private copy of REPO's built packages in SNAP
#   (third-party node_modules linked, not copied), so a rebuild by someone
#   else during a long run cannot mix two versions. Retries while the dist
#   changes under it. Sets PLAIT to the snapshot's CLI.

distsum() { cat "$1"/packages/{core,node,client,server,cli}/dist/*.js 2>/dev/null | sha256sum | cut -c1-12; }

snapshot_dist() {
  local repo=$1 snap=$2 attempt p e before
  for attempt in 1 2 3; do
    rm -rf "$snap"; mkdir -p "$snap/node_modules/@plait"
    before=$(distsum "$repo")
    for p in core node client server cli; do
      mkdir -p "$snap/packages/$p"
      cp -a "$repo/packages/$p/package.json" "$repo/packages/$p/dist" "$snap/packages/$p/"
      [[ -d $repo/packages/$p/bin ]] && cp -a "$repo/packages/$p/bin" "$snap/packages/$p/"
      ln -s "../../packages/$p" "$snap/node_modules/@plait/$p"
    done
    for e in "$repo"/node_modules/* "$repo"/node_modules/.bin; do
      [[ $(basename "$e") == @plait ]] || ln -s "$e" "$snap/node_modules/$(basename "$e")"
    done
    cp "$repo/package.json" "$snap/"
    [[ $(distsum "$repo") == "$before" && $(distsum "$snap") == "$before" ]] && break
    sleep 5   # someone was rebuilding: take it again
  done
  PLAIT="$snap/packages/cli/bin/plait.js"
}
