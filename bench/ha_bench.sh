#!/usr/bin/env bash
# High availability figures (a benchmark, not a test).
#
#   bench/ha_bench.sh [ROUNDS] [KILLS] [RESULTS_DIR]
#
# 1. Write cost of mirroring: 4 KiB sequential writes at queue depth 32
#    (qemu-img bench) to LUN 0 through its owner's LIF, alternating ROUNDS
#    times (default 3) between
#      mirrored     the product: every write in the partner's NVLOG before
#                   the host is acknowledged;
#      no NVLOG     the same pair started with --nvlog=false (acknowledged
#                   from the page cache, as a standalone node; a takeover can
#                   lose acknowledged writes: the baseline the NVLOG costs
#                   against);
#      link cut     the mirrored pair with its interconnect cut (unmirrored:
#                   each write made durable before it is acknowledged).
# 2. Takeover time: KILLS times (default 5) SIGKILL node-a and time from the
#    kill to the first 4 KiB write completed through node-a's LIF address
#    (then served by node-b), with the product's default detection time
#    (2 s), then restart node-a and wait for the automatic giveback.
# Prints a Markdown table (also RESULTS_DIR/ha.md). Ports 33260/38443/37100.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
KILLS=${2:-5}
RESULTS=${3:-bench/results}
export PAIR_ISCSI_PORT=33260 PAIR_MGMT_PORT=38443 PAIR_IC_PORT=37100
PAIR=tests/harness/pair
T=iqn.2026-11.com.example:appliance
URL="iscsi://127.0.0.2:$PAIR_ISCSI_PORT/$T/0"
DIR=
trap '[[ -n $DIR ]] && "$PAIR" down "$DIR" > /dev/null 2>&1 || true' EXIT

fail() { echo "ha_bench: $*" >&2; exit 1; }
# shellcheck source=tests/harness/ha_lib.sh
source tests/harness/ha_lib.sh
up() {  # up [DAEMON_FLAGS]
  DIR=$(mktemp -d /tmp/ha-bench.XXXXXX)
  PAIR_DAEMON_FLAGS=${1:-} "$PAIR" up "$DIR" > /dev/null
  wait_for 30 "the pair" pair_normal
}
down() { "$PAIR" down "$DIR" > /dev/null; rm -rf "$DIR"; DIR=; }
write_iops() {  # 4 KiB sequential writes, QD32
  local secs
  secs=$(qemu-img bench -f raw -w -c 40000 -d 32 -s 4096 -S 4096 "$URL" 2>&1 |
         awk '/Run completed/ {print $4}')
  awk -v s="$secs" 'BEGIN { printf "%.0f\n", 40000 / s }'
}

declare -A R=([mirrored]="" [nvlog_off]="" [link_cut]="")
for ((r = 0; r < ROUNDS; r++)); do
  up
  write_iops > /dev/null  # allocate the blocks once
  R[mirrored]+="$(write_iops) "
  "$PAIR" fault "$DIR" pair interconnect-cut > /dev/null
  sleep 3
  R[link_cut]+="$(write_iops) "
  "$PAIR" fault "$DIR" pair interconnect-restore > /dev/null
  down
  up --nvlog=false
  write_iops > /dev/null
  R[nvlog_off]+="$(write_iops) "
  down
done

probe_write() { iscsi_write "127.0.0.2:$PAIR_ISCSI_PORT" 0 200M; }
times=()
up
for ((k = 0; k < KILLS; k++)); do
  sleep 1
  t0=$(date +%s%N)
  "$PAIR" kill "$DIR" node-a
  until probe_write; do sleep 0.02; done
  t1=$(date +%s%N)
  times+=($(((t1 - t0) / 1000000)))
  "$PAIR" start "$DIR" node-a > /dev/null
  wait_for 60 "giveback to node-a" pair_normal
done
down

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m=$(echo "${R[mirrored]}" | median)
n=$(echo "${R[nvlog_off]}" | median)
c=$(echo "${R[link_cut]}" | median)
mkdir -p "$RESULTS"
{
  echo "HA: write cost of the NVLOG mirror and takeover time ($(nproc) cores shared by"
  echo "the initiator and both nodes, $(date -u +%Y-%m-%d), bench/ha_bench.sh $ROUNDS $KILLS)."
  echo
  echo "| 4 KiB sequential writes, QD32, LUN 0 via its owner | median IOPS | rounds | ratio to no NVLOG |"
  echo "|---|---:|---|---:|"
  echo "| mirrored (product) | $m | ${R[mirrored]}| $(awk -v a="$m" -v b="$n" 'BEGIN{printf "%.2f", a/b}') |"
  echo "| no NVLOG (--nvlog=false, unsafe baseline) | $n | ${R[nvlog_off]}| 1.00 |"
  echo "| interconnect cut (unmirrored, durable before ack) | $c | ${R[link_cut]}| $(awk -v a="$c" -v b="$n" 'BEGIN{printf "%.2f", a/b}') |"
  echo
  echo "mirrored / unmirrored (link cut): $(awk -v a="$m" -v b="$c" 'BEGIN{printf "%.2f", a/b}')"
  echo
  python3 - "${times[@]}" <<'PY'
import statistics, sys
t = sorted(int(x) for x in sys.argv[1:])
print(f"Takeover (default 2 s detection): kill of node-a -> first 4 KiB write completed "
      f"through its LIF address: median {statistics.median(t):.0f} ms, worst {t[-1]} ms "
      f"over {len(t)} kills ({', '.join(map(str, t))} ms).")
PY
} | tee "$RESULTS/ha.md"
