#!/usr/bin/env bash
# Mirrored writes on the direct path of a partner pair (a benchmark, not a test).
#
#   bench/pair_mirror_bench.sh [ROUNDS]
#
# Starts a pair with the harness (ports 33260/38443/37100, clear of a running
# demo) and, ROUNDS times (default 3), writes LUN 0 (owned by node-a) through
# node-a's LIF: 60000 x 4 KiB at QD32, 5000 x 4 KiB at QD1 and 1000 x 1 MiB at
# QD8 (qemu-img bench).
# Every write is appended to node-a's NVLOG and mirrored into node-b's memory
# before it is acknowledged, so this measures the mirror's cost on the write
# path. Beside each figure: NVLOG appends per mirror batch (round trip), from
# node-a's /metrics over the same window.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
export PAIR_ISCSI_PORT=33260 PAIR_MGMT_PORT=38443 PAIR_IC_PORT=37100
DIR=$(mktemp -d /tmp/pair-mirror.XXXXXX)
PAIR=tests/harness/pair
trap '"$PAIR" down "$DIR" > /dev/null 2>&1 || true' EXIT
"$PAIR" up "$DIR" > /dev/null
URL=iscsi://127.0.0.2:$PAIR_ISCSI_PORT/iqn.2026-11.com.example:appliance/0
metric() {
  curl -sk -H "Authorization: Bearer $(cat "$DIR/node-a/mgmt.token")" \
    "https://127.0.0.2:$PAIR_MGMT_PORT/metrics" | awk -v k="$1" '$1 == k {print $2}'
}
run() {  # count depth size -> "ops/s appends/batch"
  local a0 b0 a1 b1 secs
  a0=$(metric appliance_nvlog_appends_total); b0=$(metric appliance_nvlog_batches_total)
  secs=$(qemu-img bench -f raw -w -c "$1" -d "$2" -s "$3" -S "$3" "$URL" 2>&1 |
    awk '/Run completed/ {print $4}')
  a1=$(metric appliance_nvlog_appends_total); b1=$(metric appliance_nvlog_batches_total)
  awk -v c="$1" -v s="$secs" -v a=$((a1 - a0)) -v b=$((b1 - b0)) \
    'BEGIN { printf "%.0f %.2f\n", c / s, (b > 0 ? a / b : 0) }'
}
echo "| round | 4 KiB write QD32 IOPS | appends/batch | 4 KiB write QD1 IOPS | 1 MiB write QD8 MB/s | appends/batch |"
echo "|---|---:|---:|---:|---:|---:|"
for ((i = 1; i <= ROUNDS; i++)); do
  read -r w4 p4 < <(run 60000 32 4096)
  read -r q1 _ < <(run 5000 1 4096)
  read -r w1 p1 < <(run 1000 8 1M)
  echo "| $i | $w4 | $p4 | $q1 | $w1 | $p1 |"
done
