#!/usr/bin/env bash
# Benchmark: regkeeper inventory against the fastest equivalent loops of peer
# tools, on the same generated registry in the same run.
#
#   bench/inventory/run.sh                 # 200 repositories x 10 tags (+4 bases)
#   REPOS=20 TAGS=5 bench/inventory/run.sh # quick
#
# The registry is the embedded distribution registry (bench/fleet) on
# 127.0.0.1, catalog page limit 1000. Peers, installed from the Go module
# proxy into the cache: regctl (regclient) and crane (go-containerregistry).
# regctl repo ls returns only the first catalog page (100 repositories), so
# the peer loops take the repository list from crane catalog, which pages.
# What each loop learns per tag: regctl/crane, the digest (a HEAD); regkeeper,
# the digest, platforms, sizes, created date, labels (a GET of the manifest and
# of each distinct config), so the comparison favours the peers.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPOS=${REPOS:-200} TAGS=${TAGS:-10} JOBS=${JOBS:-8}
. bench/lib.sh
[ -x "$BIN/regctl" ] || GOBIN=$BIN go install github.com/regclient/regclient/cmd/regctl@v0.11.7
[ -x "$BIN/crane" ] || GOBIN=$BIN go install github.com/google/go-containerregistry/cmd/crane@v0.22.1
start_fleet --repos "$REPOS" --tags "$TAGS"
export HOME=$work # regctl keeps its config here
"$BIN/regctl" registry set --tls disabled "$host" >/dev/null

# Each peer loop prints "repo:tag digest" per tag.
regctl_loop() {
  for r in $("$BIN/crane" catalog --insecure "$host"); do
    for t in $("$BIN/regctl" tag ls "$host/$r"); do
      echo "$r:$t $("$BIN/regctl" manifest head "$host/$r:$t")"
    done
  done
}
regctl_parallel() {
  for r in $("$BIN/crane" catalog --insecure "$host"); do
    "$BIN/regctl" tag ls "$host/$r" | sed "s|^|$r:|"
  done | xargs -P "$JOBS" -I{} sh -c 'echo "{} $("$0" manifest head "$1/{}")"' "$BIN/regctl" "$host"
}
crane_parallel() {
  for r in $("$BIN/crane" catalog --insecure "$host"); do
    "$BIN/crane" ls --insecure "$host/$r" | sed "s|^|$r:|"
  done | xargs -P "$JOBS" -I{} sh -c 'echo "{} $("$0" digest --insecure "$1/{}")"' "$BIN/crane" "$host"
}
inv() { "$rk" inventory "$host" --insecure --jobs "$JOBS" -o json; }

# Same answers first: every tag with the same digest.
inv | python3 -c 'import json,sys; [print(i["repository"]+":"+i["tag"], i["digest"]) for i in json.load(sys.stdin)["images"]]' | sort >"$work/rk.txt"
regctl_parallel | sort >"$work/regctl.txt"
diff -q "$work/rk.txt" "$work/regctl.txt" >/dev/null || { echo "regkeeper and regctl disagree:"; diff "$work/rk.txt" "$work/regctl.txt" | head; exit 1; }
tags=$(wc -l <"$work/rk.txt")

t_rk=$(secs inv)
t_rs=$(secs regctl_loop)
t_rp=$(secs regctl_parallel)
t_cp=$(secs crane_parallel)
printf '\ninventory of %s tags in %s repositories (%s), jobs %s\n\n' "$tags" "$((REPOS + 4))" "$host" "$JOBS"
printf '| tool | wall s | tags/s | regkeeper faster by |\n|---|---:|---:|---:|\n'
for row in "regkeeper inventory -o json:$t_rk" "regctl tag ls + manifest head, a loop:$t_rs" \
  "regctl tag ls + manifest head, xargs -P $JOBS:$t_rp" "crane ls + digest, xargs -P $JOBS:$t_cp"; do
  name=${row%:*} t=${row##*:}
  printf '| %s | %.2f | %.0f | %.1fx |\n' "$name" "$t" "$(echo "$tags / $t" | bc -l)" "$(echo "$t / $t_rk" | bc -l)"
done
