#!/usr/bin/env bash
# Benchmark: regkeeper backup against the peer tools' ways of backing up a
# registry into OCI layouts, on the same generated registry in the same run.
#
#   bench/backup/run.sh            # 30 repositories x 4 tags on 4 bases (+4 base tags): ~340 MB unique
#   SMALL=1 bench/backup/run.sh    # 10 x 2 on 2 bases: ~13 MB, a minute
#
# Registry: the embedded distribution registry (bench/backup/gen) on
# 127.0.0.1. Every application image is one of BASES large bases (two layers,
# BASE_SIZE bytes) plus one layer of its own (LAYER_SIZE bytes); a service
# keeps one base for all its tags.
#
#   regkeeper  regkeeper backup HOST DIR --jobs JOBS: one layout, every tag
#   crane      crane pull --format oci REF... DIR: one invocation, every tag,
#              one layout (crane dedups blobs within a layout)
#   regctl     regctl image copy REF ocidir://DIR/REPO:TAG for every tag, one
#              layout per repository (tags of a repository in sequence, so
#              that two processes never write one index.json; JOBS
#              repositories at a time)
#
# Each is run twice on the same directory: a first, full backup and a second
# one of the unchanged registry. MB/s is the registry's unique bytes divided
# by the first run's wall time, the same numerator for every tool; DISK is
# the apparent size of the output directory (du -sb).
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS=${JOBS:-8}
if [ -n "${SMALL:-}" ]; then
  REPOS=${REPOS:-10} TAGS=${TAGS:-2} BASES=${BASES:-2} BASE_SIZE=${BASE_SIZE:-4194304} LAYER_SIZE=${LAYER_SIZE:-262144}
else
  REPOS=${REPOS:-30} TAGS=${TAGS:-4} BASES=${BASES:-4} BASE_SIZE=${BASE_SIZE:-25165824} LAYER_SIZE=${LAYER_SIZE:-2097152}
fi
. bench/lib.sh
[ -x "$BIN/regctl" ] || GOBIN=$BIN go install github.com/regclient/regclient/cmd/regctl@v0.11.7
[ -x "$BIN/crane" ] || GOBIN=$BIN go install github.com/google/go-containerregistry/cmd/crane@v0.22.1
go build -o "$work/gen" ./bench/backup/gen

"$work/gen" --dir "$work/reg" --repos "$REPOS" --tags "$TAGS" --bases "$BASES" --base-size "$BASE_SIZE" --layer-size "$LAYER_SIZE" >"$work/gen.out" 2>"$work/gen.err" &
fleet_pid=$!
for _ in $(seq 1200); do grep -q '^host' "$work/gen.out" 2>/dev/null && break; kill -0 $fleet_pid 2>/dev/null || break; sleep 0.5; done
host=$(awk '/^host/{print $2}' "$work/gen.out")
[ -n "$host" ] || { cat "$work/gen.err"; exit 1; }
cat "$work/gen.err"
export HOME=$work # regctl keeps its config here
"$BIN/regctl" registry set --tls disabled "$host" >/dev/null

for r in $("$BIN/crane" catalog --insecure "$host"); do
  "$BIN/crane" ls --insecure "$host/$r" | sed "s|^|$r:|"
done >"$work/refs.txt"
ntags=$(wc -l <"$work/refs.txt")
unique=$(du -sb "$work/reg/storage/docker/registry/v2/blobs" | cut -f1)

rk_run() { "$rk" backup "$host" "$work/rk" --insecure --jobs "$JOBS" --progress never -o json; }
crane_run() { "$BIN/crane" pull --format oci --insecure $(sed "s|^|$host/|" "$work/refs.txt") "$work/crane"; }
regctl_run() {
  cut -d: -f1 "$work/refs.txt" | sort -u | xargs -P "$JOBS" -I{} sh -c '
    for ref in $(grep "^$1:" "$2"); do
      "$0" image copy "$3/$ref" "ocidir://$4/$ref" >/dev/null || exit 1
    done' "$BIN/regctl" {} "$work/refs.txt" "$host" "$work/regctl"
}

declare -A first second disk
for tool in rk crane regctl; do
  sync
  first[$tool]=$(secs ${tool}_run)
  second[$tool]=$(secs ${tool}_run)
  disk[$tool]=$(du -sb "$work/$tool" | cut -f1)
done

# Same content: every tag in regkeeper's backup, which verifies; crane's
# layout names every tag.
"$rk" verify "$work/rk" --progress never >/dev/null
"$rk" backup "$host" "$work/rk" --insecure --progress never -o json >"$work/rk-third.json"
python3 - "$work" "$ntags" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
rk = json.load(open(work + "/rk-third.json"))
assert rk["images"] == n and rk["bytesWritten"] == 0, rk
crane = json.load(open(work + "/crane/index.json"))
assert len(crane["manifests"]) >= n, len(crane["manifests"])
PY

# regkeeper restore into an empty registry, twice, and verify.
"$work/gen" --dir "$work/dst" --repos 0 --bases 0 >"$work/dst.out" 2>/dev/null &
dst_pid=$!
trap 'kill $dst_pid 2>/dev/null; [ -n "$fleet_pid" ] && kill "$fleet_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q '^host' "$work/dst.out" 2>/dev/null && break; sleep 0.2; done
dst=$(awk '/^host/{print $2}' "$work/dst.out")
restore1=$(secs "$rk" restore "$work/rk" "$dst" --insecure --jobs "$JOBS" --progress never)
restore2=$(secs "$rk" restore "$work/rk" "$dst" --insecure --jobs "$JOBS" --progress never)
verify=$(secs "$rk" verify "$work/rk" --jobs "$JOBS" --progress never)

mb() { echo "scale=1; $1 / 1000000" | bc; }
echo
echo "registry: $ntags tags in $(cut -d: -f1 "$work/refs.txt" | sort -u | wc -l) repositories, $(mb "$unique") MB unique; JOBS=$JOBS; $(nproc) cores"
echo
echo "| tool | first run (s) | MB/s | disk (MB) | unchanged re-run (s) | re-run / first |"
echo "|---|---:|---:|---:|---:|---:|"
for tool in rk crane regctl; do
  name=$tool; [ $tool = rk ] && name=regkeeper
  printf "| %s | %.2f | %.1f | %s | %.2f | %.3f |\n" "$name" "${first[$tool]}" \
    "$(echo "$unique / ${first[$tool]} / 1000000" | bc -l)" "$(mb "${disk[$tool]}")" "${second[$tool]}" \
    "$(echo "${second[$tool]} / ${first[$tool]}" | bc -l)"
done
echo
printf "regkeeper restore into an empty registry: %.2f s (unchanged re-run %.2f s); verify: %.2f s\n" "$restore1" "$restore2" "$verify"
