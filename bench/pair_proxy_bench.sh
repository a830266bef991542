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
# 1 MiB sequential reads and writes QD8 (qemu-img bench); CASES="rand_read_4k ..."
# runs a subset.
# Beside each figure: CPU time per operation (node-a, node-b, and the whole
# machine, client included), from /proc over the same window: on this one
# machine both nodes and the client share the cores, so CPU per operation is
# what a pair with a node per machine would be bounded by.
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

PID_A=$(python3 -c 'import json,sys; print({n["name"]: n["pid"] for n in json.load(open(sys.argv[1]))["nodes"]}["node-a"])' "$DIR/pair.json")
PID_B=$(python3 -c 'import json,sys; print({n["name"]: n["pid"] for n in json.load(open(sys.argv[1]))["nodes"]}["node-b"])' "$DIR/pair.json")
TICK=$(getconf CLK_TCK)
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Busy ticks of the whole machine: user nice system irq softirq steal.
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

declare -A RESULT CPU
CASES=${CASES:-rand_read_4k seq_write_4k seq_read_1m seq_write_1m}
for case in $CASES; do
  for path in direct proxied; do RESULT[$case.$path]=""; CPU[$case.$path]=""; done
  for ((r = 0; r < ROUNDS; r++)); do
    for path in direct proxied; do
      a0=$(proc_ticks "$PID_A") b0=$(proc_ticks "$PID_B") m0=$(machine_ticks)
      t0=$(date +%s.%N)
      rate=$($case "${URL[$path]}")
      t1=$(date +%s.%N)
      a1=$(proc_ticks "$PID_A") b1=$(proc_ticks "$PID_B") m1=$(machine_ticks)
      RESULT[$case.$path]+="$rate "
      # us of CPU per operation = CPU seconds per wall second / operations per second.
      CPU[$case.$path]+=$(awk -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v m=$((m1 - m0)) \
        -v hz="$TICK" -v t0="$t0" -v t1="$t1" -v r="$rate" 'BEGIN {
          w = t1 - t0; k = 1e6 / (hz * w * (r > 0 ? r : 1));
          printf "%.0f/%.0f/%.0f ", a * k, b * k, m * k }')
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
  for case in $CASES; do
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
  echo "CPU time per operation (us; node-a / node-b / whole machine incl. the client), median"
  echo "of the rounds per column:"
  echo
  echo "| case | direct | proxied |"
  echo "|---|---|---|"
  for case in $CASES; do
    cols=()
    for path in direct proxied; do
      cols+=("$(for i in 1 2 3; do echo "${CPU[$case.$path]}" | tr ' ' '\n' | grep . |
                 cut -d/ -f$i | median; done | paste -sd/)")
    done
    echo "| $case | ${cols[0]} | ${cols[1]} |"
  done
  echo
  echo "Raw rounds: $(for k in "${!RESULT[@]}"; do echo -n "$k=[${RESULT[$k]% }] "; done)"
} | tee "$RESULTS/pair_proxy.md"
