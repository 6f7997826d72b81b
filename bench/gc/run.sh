#!/usr/bin/env bash
# bench/gc/run.sh: regkeeper gc against distribution's stock garbage collector
# (`registry garbage-collect --delete-untagged`, v3.1.2) on identical copies of
# a generated registry, on the filesystem and (when MinIO is installed) on S3.
#
# Shapes (repositories x tags, every tag pushed VERSIONS times, so that
# VERSIONS-1 of every VERSIONS manifests are untagged garbage; each manifest
# has its own config and two 1 KiB layers):
#   filesystem: 200 x 10 and 20 x 400, VERSIONS=4 (8,000 and 32,000 manifests)
#   MinIO:      50 x 10 and 4 x 50 (2,000 and 800 manifests: a single local
#               MinIO writes a few hundred objects a second, and the stock
#               collector reads every tag once per manifest)
#   SMALL=1:    20 x 10 and 4 x 50 everywhere (a quick check of the script)
#
# On the filesystem each round collects fresh copies of one generated tree
# with: the stock collector; regkeeper gc --offline; regkeeper gc (online,
# the default: quarantine, settle, re-scan, purge); and the floor: the exact
# paths regkeeper --offline deleted (a find before and after), deleted from
# a fresh copy by bench/gc/floor (unlinkat relative to each parent, one
# worker per parent). It prints medians (min-max) over ROUNDS rounds and
# regkeeper's wall time as a ratio to the stock collector and to the floor
# measured in the same rounds, with peak RSS and, when strace is installed,
# system calls per deleted inode and per deleted blob or link (a file and
# its directory; strace -c -f, one extra offline run).
#
# Every collected copy of the first round is then served by the stock
# registry and every tag and its blobs are HEADed (gen -verify). Wall time
# and peak RSS come from /usr/bin/time. Environment:
#   SMALL=1        quick version
#   FS_SHAPES="R:T ...", S3_SHAPES="R:T ..."  override the shapes
#   VERSIONS=4     pushes per tag
#   JOBS=8         regkeeper gc --jobs
#   ROUNDS=3       filesystem rounds (medians are printed)
#   SETTLE=10s     regkeeper gc --settle of the online row
#   STRACE=1       count system calls (0: skip)
#   STOCK=0        filesystem: skip the stock collector (only the ratios to
#                  the floor and of online to offline; for repeated rounds of
#                  a shape where the stock collector takes many minutes)
#   BACKENDS="fs s3"  which storages (s3 is skipped without MinIO)
#   BENCH_DIR=DIR  work directory (default: a new /tmp/regkeeper-bench.*;
#                  removed at the end unless KEEP=1)
set -euo pipefail
cd "$(dirname "$0")/../.."
repo_root=$PWD

bin="${XDG_CACHE_HOME:-$HOME/.cache}/regkeeper/bin"
mkdir -p "$bin"
if [ ! -x "$bin/registry" ]; then
  echo "== installing the stock registry v3.1.2 into $bin" >&2
  (cd "$(mktemp -d)" && GOBIN="$bin" GOFLAGS=-mod=mod go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2)
fi
if [ ! -x /usr/bin/time ]; then
  echo "== installing /usr/bin/time" >&2
  apt-get install -y time >/dev/null || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }
fi
minio="${REGKEEPER_MINIO:-$bin/minio}"

if [ "${SMALL:-}" = 1 ]; then
  fs_shapes=${FS_SHAPES:-"20:10 4:50"}
  s3_shapes=${S3_SHAPES:-"20:10 4:50"}
else
  fs_shapes=${FS_SHAPES:-"200:10 20:400"}
  s3_shapes=${S3_SHAPES:-"50:10 4:50"}
fi
versions=${VERSIONS:-4}
jobs=${JOBS:-8}
backends=${BACKENDS:-"fs s3"}

work=${BENCH_DIR:-$(mktemp -d /tmp/regkeeper-bench.XXXXXX)}
mkdir -p "$work"
echo "== work directory $work" >&2
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "${KEEP:-}" != 1 ] && [ -z "${BENCH_DIR:-}" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

echo "== building regkeeper and bench/gc/gen" >&2
go build -o "$work/regkeeper" ./cmd/regkeeper
go build -o "$work/gen" ./bench/gc/gen
go build -o "$work/floor" ./bench/gc/floor
rounds=${ROUNDS:-3}
settle=${SETTLE:-10s}
use_strace=${STRACE:-1}
use_stock=${STOCK:-1}
command -v strace >/dev/null || use_strace=0

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # URL: wait until it answers (any status) for up to 60s
  for _ in $(seq 600); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "no answer from $1" >&2; return 1
}

# config FILE BACKEND NAME: a registry config for storage NAME (a directory
# under $work for fs, a bucket for s3), listening on a free port.
config() {
  local file=$1 backend=$2 name=$3 port
  port=$(free_port)
  {
    echo "version: 0.1"
    echo "log: {level: error, accesslog: {disabled: true}}"
    echo "storage:"
    if [ "$backend" = fs ]; then
      echo "  filesystem: {rootdirectory: $work/$name}"
    else
      echo "  s3: {accesskey: regkeeper, secretkey: regkeeper-secret, region: us-east-1, regionendpoint: 'http://$minio_addr', bucket: $name, forcepathstyle: true, secure: false, v4auth: true}"
    fi
    echo "  delete: {enabled: true}"
    echo "  maintenance: {uploadpurging: {enabled: false}}"
    echo "  redirect: {disable: true}"
    echo "http: {addr: '127.0.0.1:$port', secret: bench}"
  } >"$file"
  echo "$port"
}

# timed NAME CMD...: runs CMD under /usr/bin/time; sets secs and rss_mb.
# The disk is synced first, so that no run pays for the writes (and, with
# discard, the block discards) of the run before it.
timed() {
  local name=$1; shift
  sync
  /usr/bin/time -f '%e %M' -o "$work/$name.time" "$@" >"$work/$name.log" 2>&1 || {
    echo "FAILED: $* (see $work/$name.log)" >&2; tail -20 "$work/$name.log" >&2; return 1; }
  read -r secs rss_kb <"$work/$name.time"
  rss_mb=$((rss_kb / 1024))
}

# verify CONFIG PORT R T: serve the storage with the stock registry and
# HEAD every tag and its blobs.
verify() {
  local cfg=$1 port=$2 r=$3 t=$4 pid
  "$bin/registry" serve "$cfg" >"$cfg.serve.log" 2>&1 &
  pid=$!; pids+=("$pid")
  wait_http "http://127.0.0.1:$port/v2/"
  if "$work/gen" -verify "http://127.0.0.1:$port" -repos "$r" -tags "$t" -versions "$versions" >"$cfg.verify.log" 2>&1; then
    verified=ok
  else
    verified=FAILED; cat "$cfg.verify.log" >&2
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

minio_addr=
if [[ " $backends " == *" s3 "* ]]; then
  if [ -x "$minio" ]; then
    port=$(free_port); cport=$(free_port)
    minio_addr=127.0.0.1:$port
    MINIO_ROOT_USER=regkeeper MINIO_ROOT_PASSWORD=regkeeper-secret MINIO_BROWSER=off MINIO_UPDATE=off MINIO_CI_CD=1 \
      "$minio" server --quiet --address "$minio_addr" --console-address "127.0.0.1:$cport" "$work/minio-data" >"$work/minio.log" 2>&1 &
    pids+=("$!")
    wait_http "http://$minio_addr/minio/health/ready"
  else
    echo "== no MinIO at $minio (scripts/setup-minio installs it): skipping s3" >&2
    backends=${backends//s3/}
  fi
fi

cols() { # "blobs=B revisions=M layerlinks=L" -> "B | M | L"
  local b m l
  read -r b m l <<<"$1"
  echo "${b#*=} | ${m#*=} | ${l#*=}"
}


# median and range of numbers on stdin: "M (lo-hi)" or "M" for one.
med() { sort -g | awk '{v[NR]=$1} END { m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2;
  if (NR > 1) printf "%.2f (%.2f-%.2f)", m, v[1], v[NR]; else printf "%.2f", m }'; }
mid() { sort -g | awk '{v[NR]=$1} END { printf "%.3f", (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2 }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }

# listing DIR: every path under DIR with its type, sorted.
listing() { (cd "$1" && find . -mindepth 1 -printf '%y %P\n' | LC_ALL=C sort); }

# fs_shape R T: ROUNDS rounds of stock, regkeeper --offline, regkeeper
# (online) and the floor on fresh copies of one generated tree.
fs_shape() {
  local r=$1 t=$2 id="fs-${r}x${t}" round v run
  echo "== $id: generating $r repositories x $t tags x $versions versions" >&2
  config "$work/$id-orig.yml" fs "$id-orig" >/dev/null
  "$work/gen" -config "$work/$id-orig.yml" -repos "$r" -tags "$t" -versions "$versions" >&2
  local before; before=$("$work/gen" -count -config "$work/$id-orig.yml")
  rows+=("| ${r} x ${t} x ${versions} | fs | (before) | | | $(cols "$before") | | |")
  listing "$work/$id-orig" >"$work/$id-before.list"
  : >"$work/$id-stock.t"; : >"$work/$id-offline.t"; : >"$work/$id-online.t"; : >"$work/$id-floor.t"
  : >"$work/$id-stock.m"; : >"$work/$id-offline.m"; : >"$work/$id-online.m"
  local ok=ok
  for round in $(seq "$rounds"); do
    for v in stock offline online floor; do
      [ "$v" = stock ] && [ "$use_stock" != 1 ] && continue
      rm -rf "${work:?}/$id-$v"
      cp -a "$work/$id-orig" "$work/$id-$v"
      p_port=$(config "$work/$id-$v.yml" fs "$id-$v")
      eval "port_$v=$p_port"
    done
    sync
    if [ "$use_stock" = 1 ]; then
      echo "== $id round $round: stock" >&2
      timed "$id-stock" "$bin/registry" garbage-collect --delete-untagged "$work/$id-stock.yml"
      echo "$secs" >>"$work/$id-stock.t"; echo "$rss_mb" >>"$work/$id-stock.m"
    fi
    echo "== $id round $round: regkeeper gc --offline" >&2
    timed "$id-offline" "$work/regkeeper" gc --config "$work/$id-offline.yml" --grace 0 --max-delete-ratio 1 --jobs "$jobs" --offline --progress never
    echo "$secs" >>"$work/$id-offline.t"; echo "$rss_mb" >>"$work/$id-offline.m"
    echo "== $id round $round: regkeeper gc (online, --settle $settle)" >&2
    timed "$id-online" "$work/regkeeper" gc --config "$work/$id-online.yml" --grace 0 --max-delete-ratio 1 --jobs "$jobs" --settle "$settle" --progress never
    echo "$secs" >>"$work/$id-online.t"; echo "$rss_mb" >>"$work/$id-online.m"
    listing "$work/$id-offline" >"$work/$id-after.list"
    LC_ALL=C comm -23 "$work/$id-before.list" "$work/$id-after.list" >"$work/$id-deleted.list"
    echo "== $id round $round: floor ($(wc -l <"$work/$id-deleted.list") paths)" >&2
    sync; "$work/floor" -root "$work/$id-floor" -workers 8 <"$work/$id-deleted.list" >>"$work/$id-floor.t"
    if [ "$round" = 1 ]; then
      # Same tree left by every method?
      listing "$work/$id-floor" | cmp -s - "$work/$id-after.list" || { echo "   floor left a different tree" >&2; ok=FAILED; }
      # Online may leave empty directories offline removes (not a failure).
      listing "$work/$id-online" | LC_ALL=C comm -3 - "$work/$id-after.list" | head -5 | sed 's/^/   online vs offline: /' >&2
      ok_stock=- after_stock="- - -"
      for v in stock offline online; do
        [ "$v" = stock ] && [ "$use_stock" != 1 ] && continue
        run=$v
        eval "p_port=\$port_$v"
        verify "$work/$id-$v.yml" "$p_port" "$r" "$t"
        eval "ok_$run=$verified"
        [ "$verified" = ok ] || ok=FAILED
        eval "after_$run=\"$("$work/gen" -count -config "$work/$id-$v.yml")\""
      done
    fi
    rm -rf "${work:?}/$id-stock" "${work:?}/$id-offline" "${work:?}/$id-online" "${work:?}/$id-floor"
  done
  local sc="-" inodes; inodes=$(wc -l <"$work/$id-deleted.list")
  if [ "$use_strace" = 1 ]; then
    cp -a "$work/$id-orig" "$work/$id-strace"; config "$work/$id-strace.yml" fs "$id-strace" >/dev/null; sync
    strace -c -f -o "$work/$id-strace.txt" "$work/regkeeper" gc --config "$work/$id-strace.yml" --grace 0 --max-delete-ratio 1 --jobs "$jobs" --offline --progress never >/dev/null 2>&1
    local calls; calls=$(awk '$NF == "total" { print $4 }' "$work/$id-strace.txt")
    local files; files=$(grep -c '^f ' "$work/$id-deleted.list")
    sc=$(awk -v c="$calls" -v n="$inodes" -v f="$files" 'BEGIN { printf "%.1f per inode, %.1f per blob or link (%d calls, %d inodes)", c / n, c / f, c, n }')
    rm -rf "${work:?}/$id-strace"
  fi
  local ts to tn tf
  ts=0; [ "$use_stock" = 1 ] && ts=$(mid <"$work/$id-stock.t")
  to=$(mid <"$work/$id-offline.t"); tn=$(mid <"$work/$id-online.t"); tf=$(mid <"$work/$id-floor.t")
  local settle_s; settle_s=$(awk -v s="$settle" 'BEGIN { sub(/s$/, "", s); print s + 0 }')
  [ "$use_stock" = 1 ] && rows+=("| ${r} x ${t} x ${versions} | fs | stock | $(med <"$work/$id-stock.t") s | $(mid <"$work/$id-stock.m" | cut -d. -f1) MB | $(cols "$after_stock") | $ok_stock | | | |")
  rows+=("| ${r} x ${t} x ${versions} | fs | regkeeper --offline | $(med <"$work/$id-offline.t") s | $(mid <"$work/$id-offline.m" | cut -d. -f1) MB | $(cols "$after_offline") | $ok_offline | **$(div "$to" "$ts")** | **$(div "$to" "$tf")** | $sc |")
  rows+=("| ${r} x ${t} x ${versions} | fs | regkeeper (online, settle $settle) | $(med <"$work/$id-online.t") s | $(mid <"$work/$id-online.m" | cut -d. -f1) MB | $(cols "$after_online") | $ok_online | $(div "$tn" "$ts") | $(div "$tn" "$tf"); minus settle $(div "$(awk -v a="$tn" -v s="$settle_s" 'BEGIN{print a - s}')" "$to") of offline | |")
  rows+=("| ${r} x ${t} x ${versions} | fs | floor (unlinkat, 8 workers) | $(med <"$work/$id-floor.t") s | | | | | 1.00x | |")
  rm -rf "${work:?}/$id-orig"
  [ "$ok" = ok ]
}

rows=()
failed=0
for backend in $backends; do
  shapes=$fs_shapes
  [ "$backend" = s3 ] && shapes=$s3_shapes
  for shape in $shapes; do
    r=${shape%%:*}; t=${shape##*:}
    id="$backend-${r}x${t}"
    if [ "$backend" = fs ]; then
      fs_shape "$r" "$t" || failed=1
      continue
    fi
    echo "== $id: generating $r repositories x $t tags x $versions versions" >&2
    p_stock=$(config "$work/$id-stock.yml" "$backend" "$id-stock")
    p_rk=$(config "$work/$id-regkeeper.yml" "$backend" "$id-regkeeper")
    if [ "$backend" = s3 ]; then
      "$work/gen" -mkbucket -config "$work/$id-stock.yml"
      "$work/gen" -mkbucket -config "$work/$id-regkeeper.yml"
      "$work/gen" -config "$work/$id-stock.yml" -repos "$r" -tags "$t" -versions "$versions" >&2
      "$work/gen" -config "$work/$id-regkeeper.yml" -repos "$r" -tags "$t" -versions "$versions" >&2
    else
      "$work/gen" -config "$work/$id-stock.yml" -repos "$r" -tags "$t" -versions "$versions" >&2
      cp -a "$work/$id-stock" "$work/$id-regkeeper"
    fi
    before=$("$work/gen" -count -config "$work/$id-stock.yml")
    echo "   before: $before" >&2
    rows+=("| ${r} x ${t} x ${versions} | $backend | (before) | | | $(cols "$before") | | |")
    sync

    echo "== $id: registry garbage-collect --delete-untagged" >&2
    timed "$id-stock-gc" "$bin/registry" garbage-collect --delete-untagged "$work/$id-stock.yml"
    s_secs=$secs s_rss=$rss_mb
    s_after=$("$work/gen" -count -config "$work/$id-stock.yml")
    verify "$work/$id-stock.yml" "$p_stock" "$r" "$t"; s_ok=$verified

    echo "== $id: regkeeper gc --grace 0 --jobs $jobs" >&2
    timed "$id-regkeeper-gc" "$work/regkeeper" gc --config "$work/$id-regkeeper.yml" --grace 0 --max-delete-ratio 1 --jobs "$jobs" --progress never
    k_secs=$secs k_rss=$rss_mb
    k_after=$("$work/gen" -count -config "$work/$id-regkeeper.yml")
    verify "$work/$id-regkeeper.yml" "$p_rk" "$r" "$t"; k_ok=$verified
    [ "$s_ok" = ok ] && [ "$k_ok" = ok ] || failed=1

    ratio=$(awk -v a="$s_secs" -v b="$k_secs" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "-" }')
    echo "   stock: ${s_secs}s ${s_rss}MB after: $s_after ($s_ok)   regkeeper: ${k_secs}s ${k_rss}MB after: $k_after ($k_ok)   $ratio" >&2
    rows+=("| ${r} x ${t} x ${versions} | $backend | stock | ${s_secs} s | ${s_rss} MB | $(cols "$s_after") | $s_ok | |")
    rows+=("| ${r} x ${t} x ${versions} | $backend | regkeeper | ${k_secs} s | ${k_rss} MB | $(cols "$k_after") | $k_ok | **$ratio** |")
    rm -rf "$work/$id-stock" "$work/$id-regkeeper"
  done
done

echo
echo "regkeeper gc vs registry garbage-collect --delete-untagged (distribution v3.1.2); $(nproc) cores; regkeeper --jobs $jobs"
echo
echo "Filesystem: medians (min-max) of $rounds rounds on fresh copies; ratios are of medians from the same rounds."
echo "The floor deletes exactly the paths regkeeper --offline deleted (bench/gc/floor). On S3 a speed-up is stock / regkeeper."
echo
echo "| repos x tags x pushes | storage | gc | wall | peak RSS | blobs left | manifests left | layer links left | every tag served | vs stock | vs floor | system calls |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit $failed
