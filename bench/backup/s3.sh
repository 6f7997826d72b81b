#!/usr/bin/env bash
# Benchmark: regkeeper backup from a registry stored on MinIO into another
# bucket of the same MinIO, the pull path against store-side copy (--config).
#
#   bench/backup/s3.sh              # 2 bases of 32 MiB + 25 x 2 apps of 4 MiB: 52 tags, ~277 MB unique, ~1 min
#   BASE_SIZE=8388608 LAYER_SIZE=1048576 bench/backup/s3.sh   # ~69 MB unique
#   RUNS=1 ...                           # one backup each way (default 3, alternating; best wall time)
#
# Everything on 127.0.0.1: MinIO (~/.cache/regkeeper/bin/minio, from
# scripts/setup-minio) in a temporary directory, a counting reverse proxy in
# front of it that every S3 request of the registry and of regkeeper passes,
# the embedded distribution registry with s3 storage in bucket "registry"
# (through that proxy), and a counting proxy in front of the registry. Each
# backup goes to a fresh prefix of bucket "backups" and is verified
# (regkeeper verify, untimed) before its numbers are printed. See
# bench/backup/s3/main.go for what each row counts.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/regkeeper" ./cmd/regkeeper
go build -o "$work/s3bench" ./bench/backup/s3
"$work/s3bench" --rk "$work/regkeeper" --repos "${REPOS:-25}" --tags "${TAGS:-2}" --bases "${BASES:-2}" \
  --base-size "${BASE_SIZE:-33554432}" --layer-size "${LAYER_SIZE:-4194304}" --jobs "${JOBS:-8}" --runs "${RUNS:-3}"
