#!/usr/bin/env bash
# bench/retain/run.sh: plan retention on one repository of 100,000 tags
# (TAGS=N for another size), with push times and digests from storage
# (--root) and without (a HEAD per tag, dates from image configs); prints
# wall seconds and peak memory (maximum resident set size) of each.
# Run from the repository root.
set -euo pipefail
TAGS=${TAGS:-100000}
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/regkeeper" ./cmd/regkeeper
go build -o "$work/gen" ./bench/retain/gen
"$work/gen" --dir "$work/reg" --tags "$TAGS" >"$work/gen.out" 2>"$work/gen.err" &
pid=$!
for _ in $(seq 1200); do grep -q '^root' "$work/gen.out" 2>/dev/null && break; sleep 0.5; done
host=$(awk '/^host/{print $2}' "$work/gen.out")
root=$(awk '/^root/{print $2}' "$work/gen.out")
[ -n "$root" ] || { cat "$work/gen.err"; exit 1; }
cat "$work/gen.err"
measure() {
  local what=$1; shift
  /usr/bin/time -v "$@" >"$work/plan.json" 2>"$work/time.txt" || { tail "$work/time.txt"; exit 1; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/{print $2}' "$work/time.txt")
  rss=$(awk -F': ' '/Maximum resident set size/{print $2}' "$work/time.txt")
  grep -Eo 'msg="(facts read|plan made)".*' "$work/time.txt" >&2 || true
  printf '| %s | %s | %d MiB | %s |\n' "$what" "$wall" $((rss / 1024)) \
    "$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); print(p["kept"], "kept,", p["removed"], "removed")' "$work/plan.json")"
}
echo "| plan of $TAGS tags | wall (m:s) | peak RSS | plan |"
echo "|---|---:|---:|---|"
measure "--root (storage)" "$work/regkeeper" retain "$host" --insecure --policy bench/retain/policy.yml --root "$root" --dry-run -o json -v
[ "${STORAGE_ONLY:-}" = 1 ] || measure "registry API only" "$work/regkeeper" retain "$host" --insecure --policy bench/retain/policy.yml --dry-run -o json -v
