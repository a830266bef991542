#!/usr/bin/env bash
# Direct vs proxied path, side by side in one run (a benchmark, not a test).
#
#   bench/pair_proxy_bench.sh [ROUNDS] [RESULTS_DIR]
#
# Starts a partner pair with the harness (ports 33260/38443/37100 so it does not
# disturb a running demo), then for LUN 0 (owned by node-a) alternates each case
# between node-a's LIF (direct) and node-b's LIF (proxied over the interconnect),
# ROUNDS times (default 3), and prints medians and the ratio proxied/direct as
# a Markdown table (also written to RESULTS_DIR/pair_proxy.md).
# Cases: 4 KiB random reads QD32 (iscsi-perf -r), 4 KiB sequential writes QD32,
# 1 MiB sequential reads and writes QD8 (qemu-img bench).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
RESULTS=${2:-bench/results}
export PAIR_ISCSI_PORT=33260 PAIR_MGMT_PORT=38443 PAIR_IC_PORT=37100
DIR=$(mktemp -d /tmp/pair-bench.XXXXXX)
PAIR=tests/harness/pair
trap '"$PAIR" down "$DIR" > /dev/null 2>&1 || true' EXIT
"$PAIR" up "$DIR" > /dev/null
T=iqn.2026-11.com.example:appliance
declare -A URL=([direct]="iscsi://127.0.0.2:$PAIR_ISCSI_PORT/$T/0"
                [proxied]="iscsi://127.0.0.3:$PAIR_ISCSI_PORT/$T/0")

# Each case prints one number (IOPS or MB/s).
rand_read_4k() {
  timeout 60 iscsi-perf -r -m 32 -b 8 -t 8 "$1" 2>&1 | tr '\r' '\n' |
    grep -o 'iops average [0-9]*' | tail -1 | awk '{print $3}'
}
qemu_bench() {  # url count depth size write(0/1) -> ops/s
  local args=(-f raw -c "$2" -d "$3" -s "$4" -S "$4")
  (($5)) && args+=(-w)
  local secs
  secs=$(qemu-img bench "${args[@]}" "$1" 2>&1 | awk '/Run completed/ {print $4}')
  awk -v c="$2" -v s="$secs" 'BEGIN { printf "%.0f\n", c / s }'
}
seq_write_4k() { qemu_bench "$1" 40000 32 4096 1; }
seq_read_1m() { qemu_bench "$1" 1500 8 1M 0; }
seq_write_1m() { qemu_bench "$1" 1500 8 1M 1; }

# Lay data down once so reads hit allocated blocks.
qemu_bench "${URL[direct]}" 256 8 1M 1 > /dev/null

declare -A RESULT
for case in rand_read_4k seq_write_4k seq_read_1m seq_write_1m; do
  for path in direct proxied; do RESULT[$case.$path]=""; done
  for ((r = 0; r < ROUNDS; r++)); do
    for path in direct proxied; do
      RESULT[$case.$path]+="$($case "${URL[$path]}") "
    done
  done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mkdir -p "$RESULTS"
{
  echo "Direct vs proxied path, LUN 0 owned by node-a; median of $ROUNDS alternating rounds"
  echo "($(nproc) cores, $(date -u +%Y-%m-%d), bench/pair_proxy_bench.sh)."
  echo
  echo "| case | direct | proxied | proxied / direct |"
  echo "|---|---|---|---|"
  for case in rand_read_4k seq_write_4k seq_read_1m seq_write_1m; do
    d=$(echo "${RESULT[$case.direct]}" | median)
    p=$(echo "${RESULT[$case.proxied]}" | median)
    case $case in
      rand_read_4k) label="4 KiB random read QD32 (IOPS)"; dv=$d; pv=$p ;;
      seq_write_4k) label="4 KiB sequential write QD32 (IOPS)"; dv=$d; pv=$p ;;
      seq_read_1m) label="1 MiB sequential read QD8 (MB/s)"; dv=$(awk -v x="$d" 'BEGIN{printf "%.0f", x*1.048576}'); pv=$(awk -v x="$p" 'BEGIN{printf "%.0f", x*1.048576}') ;;
      seq_write_1m) label="1 MiB sequential write QD8 (MB/s)"; dv=$(awk -v x="$d" 'BEGIN{printf "%.0f", x*1.048576}'); pv=$(awk -v x="$p" 'BEGIN{printf "%.0f", x*1.048576}') ;;
    esac
    ratio=$(awk -v a="$pv" -v b="$dv" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    echo "| $label | $dv | $pv | $ratio |"
  done
  echo
  echo "Raw rounds: $(for k in "${!RESULT[@]}"; do echo -n "$k=[${RESULT[$k]% }] "; done)"
} | tee "$RESULTS/pair_proxy.md"
