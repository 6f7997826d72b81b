#!/usr/bin/env bash
# Benchmark: the cost of an audit over the inventory it builds on, on a
# registry of 2,000 tags built on a handful of shared bases. The lineage
# index (one map of complete diff_id lists for the whole registry) should
# make the audit cost little more than the inventory.
#
#   bench/audit/run.sh                   # 200 repositories x 10 tags on 4 bases
#   REPOS=20 TAGS=5 bench/audit/run.sh   # quick
set -euo pipefail
cd "$(dirname "$0")/../.."
REPOS=${REPOS:-200} TAGS=${TAGS:-10} BASES=${BASES:-4} RUNS=${RUNS:-3}
. bench/lib.sh
start_fleet --repos "$REPOS" --tags "$TAGS" --bases "$BASES"

# The audit must find every application's base, by layers.
"$rk" audit "$host" --insecure -o json >"$work/audit.json"
python3 - "$work/audit.json" <<'PY'
import json, sys
imgs = json.load(open(sys.argv[1]))["images"]
apps = [i for i in imgs if i["repository"].startswith("fleet/")]
found = [i for i in apps if i["base"] and i["base"]["detectedBy"] == "layers" and i["base"]["repository"].startswith("base/os-")]
print(f"audited {len(imgs)} images; {len(found)} of {len(apps)} applications on a base found by layers")
sys.exit(0 if len(found) == len(apps) else 1)
PY

best() { # best of RUNS wall times
  local b=
  for _ in $(seq "$RUNS"); do
    t=$(secs "$@")
    if [ -z "$b" ] || [ "$(echo "$t < $b" | bc)" = 1 ]; then b=$t; fi
  done
  echo "$b"
}
t_inv=$(best "$rk" inventory "$host" --insecure -o json)
t_aud=$(best "$rk" audit "$host" --insecure -o json)
printf '\n%s tags on %s bases, best of %s runs\n\n' "$((REPOS * TAGS + BASES))" "$BASES" "$RUNS"
printf '| command | wall s | vs inventory |\n|---|---:|---:|\n'
printf '| regkeeper inventory -o json | %.2f | 1.00x |\n' "$t_inv"
printf '| regkeeper audit -o json | %.2f | %.2fx |\n' "$t_aud" "$(echo "$t_aud / $t_inv" | bc -l)"
