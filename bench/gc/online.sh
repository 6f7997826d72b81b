#!/usr/bin/env bash
# The cost of gc's online protocol against --offline on the same storage
# (issue 12): one filesystem storage is generated (bench/gc/gen), copied
# twice, and collected once each way, with `--grace 0`. The online run is
# timed with `--settle 0`, so the ratio is the protocol's own work (moving
# blobs to the quarantine and purging them, the re-scan); the settle is a
# wait, added to the online run's wall time as it is configured (10s by
# default) and printed separately.
#
#   bench/gc/online.sh [REPOS TAGS VERSIONS]     # default 50 10 4
#
# The registry is not running: this measures cost, not safety (the push
# storm tests in gc/ do that).
set -euo pipefail
repos=${1:-50} tags=${2:-10} versions=${3:-4}
settle=${SETTLE:-10s}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$(dirname "$0")/../.."
go build -o "$work/regkeeper" ./cmd/regkeeper
go build -o "$work/gen" ./bench/gc/gen

cfg() { printf 'version: 0.1\nstorage:\n  filesystem: {rootdirectory: %s}\n' "$1" > "$1.yml"; }
mkdir -p "$work/src"
cfg "$work/src"
"$work/gen" -config "$work/src.yml" -repos "$repos" -tags "$tags" -versions "$versions" >/dev/null

run() { # name, flags...
  local name=$1
  shift
  rm -rf "$work/$name"
  cp -a "$work/src" "$work/$name"
  cfg "$work/$name"
  sync
  local t0 t1
  t0=$(date +%s.%N)
  "$work/regkeeper" gc --config "$work/$name.yml" --grace 0 --max-delete-ratio 1 --progress never -o json "$@" > "$work/$name.json"
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
offline=$(run offline --offline)
online=$(run online --settle 0)
for f in offline online; do
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%-8s manifests %d, blobs %d, layer links %d, restored %d" % (sys.argv[2], r["manifestsDeleted"], r["blobsDeleted"], r["layerLinksDeleted"], r["blobsRestored"]))' "$work/$f.json" "$f"
done
printf 'shape %sx%sx%s, filesystem\n' "$repos" "$tags" "$versions"
printf 'offline: %.2fs   online (settle 0): %.2fs   ratio online/offline: %.2f\n' "$offline" "$online" "$(echo "$online / $offline" | bc -l)"
printf 'settle: %s more on a default online run (--settle)\n' "$settle"
