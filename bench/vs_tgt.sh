#!/usr/bin/env bash
# Our target vs Debian's tgtd on the same machine, same kind of backing file,
# same real clients (a benchmark, not a test).
#
#   bench/vs_tgt.sh [ROUNDS] [RESULTS_DIR]
#
# Builds applianced, starts it (one node, LUN 0 on a 1 GiB file, portal
# 127.0.0.8:3260) and tgtd (LUN 1 on a 1 GiB file, portal 127.0.0.9:3260), then
# runs every case on both, alternating (ours, tgt, ours, tgt, ...) ROUNDS times
# (default 3), and reports medians and ours/tgt:
#   qemu-img bench: 4 KiB reads and writes at QD1 and QD32, 1 MiB reads and
#   writes at QD8; iscsi-perf: 4 KiB random reads at QD32.
# Also: loopback TCP throughput (iperf3) as the ceiling for large transfers, and
# each daemon's resident memory idle and with 64 sessions (each its own
# initiator name) doing 4 KiB random reads at QD32.
# Writes RESULTS_DIR/vs_tgt.md and RESULTS_DIR/vs_tgt.png (gnuplot).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=${1:-3}
RESULTS=${2:-bench/results}
SIZE=$((1 << 30))
OURS_IP=127.0.0.8
TGT_IP=127.0.0.9
TARGET_OURS=iqn.2026-11.com.example:bench
TARGET_TGT=iqn.2026-11.com.example:tgt
TGT_CONTROL=17  # tgtd control port of our own, so a running tgtd is left alone
bash scripts/install-deps
for p in iperf3 gnuplot-nox; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" > /dev/null
done
bazel build //appliance/daemon:applianced >&2

DIR=$(mktemp -d /tmp/vs-tgt.XXXXXX)
OURS_PID="" TGT_PID="" IPERF_PID=""
cleanup() {
  # Every step may fail (already gone): none may stop the rest (set -e).
  if [[ -n $OURS_PID ]]; then kill -TERM "$OURS_PID" 2>/dev/null || true; fi
  if [[ -n $TGT_PID ]]; then
    tgtadm -C "$TGT_CONTROL" --lld iscsi --mode system --op delete --force \
      > /dev/null 2>&1 || true
    kill -KILL "$TGT_PID" 2>/dev/null || true
  fi
  if [[ -n $IPERF_PID ]]; then kill "$IPERF_PID" 2>/dev/null || true; fi
  wait 2>/dev/null || true
}
trap cleanup EXIT

# Ours: one node, its LUN file on the same file system as tgt's.
mkdir -p "$DIR/ours/shared" "$DIR/tgt"
cat > "$DIR/ours/bootstrap.textproto" <<CFG
node_name: "node-a"
target_name: "$TARGET_OURS"
lifs { name: "lif-a" address: "$OURS_IP" port: 3260 relative_target_port_id: 1 target_portal_group: 1 }
mgmt_address: "$OURS_IP:0"
shared_storage_dir: "$DIR/ours/shared"
state_dir: "$DIR/ours"
seed_luns { id: 0 name: "bench" size_bytes: $SIZE }
CFG
"$ROOT/bazel-bin/appliance/daemon/applianced" --config="$DIR/ours/bootstrap.textproto" \
  > "$DIR/ours/out" 2>&1 &
OURS_PID=$!

# tgtd: rdwr backing store (buffered pread/pwrite, like ours). Our own control
# port: refuse to run if a tgtd already answers on it.
if tgtadm -C "$TGT_CONTROL" --lld iscsi --mode target --op show > /dev/null 2>&1; then
  echo "a tgtd already uses control port $TGT_CONTROL; stop it first" >&2
  exit 1
fi
truncate -s "$SIZE" "$DIR/tgt/lun.img"
tgtd -f -C "$TGT_CONTROL" --iscsi portal="$TGT_IP:3260" > "$DIR/tgt/out" 2>&1 &
TGT_PID=$!
for _ in $(seq 100); do tgtadm -C "$TGT_CONTROL" --lld iscsi --mode target --op show > /dev/null 2>&1 && break; sleep 0.1; done
tgtadm -C "$TGT_CONTROL" --lld iscsi --mode target --op new --tid 1 --targetname "$TARGET_TGT"
tgtadm -C "$TGT_CONTROL" --lld iscsi --mode logicalunit --op new --tid 1 --lun 1 -b "$DIR/tgt/lun.img"
tgtadm -C "$TGT_CONTROL" --lld iscsi --mode target --op bind --tid 1 -I ALL
for _ in $(seq 100); do [[ -s $DIR/ours/iscsi.portals ]] && break; sleep 0.1; done

declare -A URL=([ours]="iscsi://$OURS_IP:3260/$TARGET_OURS/0"
                [tgt]="iscsi://$TGT_IP:3260/$TARGET_TGT/1")
declare -A PID=([ours]=$OURS_PID [tgt]=$TGT_PID)

qemu_bench() {  # url count depth size write(0/1) -> ops per second
  local args=(-f raw -c "$2" -d "$3" -s "$4" -S "$4")
  (($5)) && args+=(-w)
  local secs
  secs=$(qemu-img bench "${args[@]}" "$1" 2>&1 | awk '/Run completed/ {print $4}')
  awk -v c="$2" -v s="$secs" 'BEGIN { printf "%.0f\n", (s > 0 ? c / s : 0) }'
}
read_4k_qd1() { qemu_bench "$1" 20000 1 4096 0; }
write_4k_qd1() { qemu_bench "$1" 10000 1 4096 1; }
read_4k_qd32() { qemu_bench "$1" 100000 32 4096 0; }
write_4k_qd32() { qemu_bench "$1" 60000 32 4096 1; }
read_1m_qd8() { qemu_bench "$1" 2000 8 1M 0; }
write_1m_qd8() { qemu_bench "$1" 2000 8 1M 1; }
randread_4k_qd32() {
  timeout 60 iscsi-perf -r -m 32 -b 8 -t 8 "$1" 2>&1 | tr '\r' '\n' |
    grep -o 'iops average [0-9]*' | tail -1 | awk '{print $3}'
}
CASES=(read_4k_qd1 write_4k_qd1 read_4k_qd32 write_4k_qd32 read_1m_qd8 write_1m_qd8 randread_4k_qd32)
declare -A LABEL=(
  [read_4k_qd1]="qemu-img bench 4 KiB read QD1 (IOPS)"
  [write_4k_qd1]="qemu-img bench 4 KiB write QD1 (IOPS)"
  [read_4k_qd32]="qemu-img bench 4 KiB read QD32 (IOPS)"
  [write_4k_qd32]="qemu-img bench 4 KiB write QD32 (IOPS)"
  [read_1m_qd8]="qemu-img bench 1 MiB read QD8 (MiB/s)"
  [write_1m_qd8]="qemu-img bench 1 MiB write QD8 (MiB/s)"
  [randread_4k_qd32]="iscsi-perf 4 KiB random read QD32 (IOPS)")

# Lay data down on both so reads hit allocated blocks.
for t in ours tgt; do qemu_bench "${URL[$t]}" 1024 8 1M 1 > /dev/null; done

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
declare -A RSS_IDLE RSS_BUSY
for t in ours tgt; do RSS_IDLE[$t]=$(rss_kib "${PID[$t]}"); done

# Each daemon's CPU time per operation over the same window (from /proc): on
# 2 cores the client competes for the CPU too, so this shows each target's own
# cost apart from what the shared machine lets it reach.
TICK=$(getconf CLK_TCK)
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A R CPU
for c in "${CASES[@]}"; do
  for ((i = 0; i < ROUNDS; i++)); do
    for t in ours tgt; do
      start=$SECONDS
      p0=$(proc_ticks "${PID[$t]}") t0=$(date +%s.%N)
      rate=$($c "${URL[$t]}")
      t1=$(date +%s.%N) p1=$(proc_ticks "${PID[$t]}")
      R[$c.$t]+="$rate "
      CPU[$c.$t]+=$(awk -v p=$((p1 - p0)) -v hz="$TICK" -v t0="$t0" -v t1="$t1" -v r="$rate" \
        'BEGIN { printf "%.1f ", p * 1e6 / (hz * (t1 - t0) * (r > 0 ? r : 1)) }')
      echo "[$c $t round $((i + 1))] $((SECONDS - start)) s" >&2
    done
  done
done

# 64 sessions, each its own initiator, QD32 random reads; RSS sampled at the peak.
for t in ours tgt; do
  pids=()
  for s in $(seq 64); do
    timeout 30 iscsi-perf -i "iqn.2026-11.test:load-$s" -r -m 32 -b 8 -t 8 "${URL[$t]}" \
      > /dev/null 2>&1 &
    pids+=($!)
  done
  peak=0
  for _ in $(seq 16); do
    sleep 0.5
    v=$(rss_kib "${PID[$t]}")
    ((v > peak)) && peak=$v
  done
  wait "${pids[@]}" 2>/dev/null || true
  RSS_BUSY[$t]=$peak
  echo "[64 sessions $t] peak RSS $((peak / 1024)) MiB" >&2
done

iperf3 -s -B 127.0.0.1 -1 > /dev/null 2>&1 &
IPERF_PID=$!
sleep 0.5
IPERF=$(iperf3 -c 127.0.0.1 -t 5 -J 2>/dev/null |
  python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/8/2**20))' ||
  echo "?")
IPERF_PID=""

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mkdir -p "$RESULTS"
: > "$RESULTS/vs_tgt.dat"
{
  echo "Ours vs tgtd $(dpkg-query -W -f='${Version}' tgt), same machine ($(nproc) cores," \
       "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r))," \
       "1 GiB file-backed LUN each, median of $ROUNDS alternating rounds, $(date -u +%Y-%m-%d)."
  echo "Reproduce: \`bench/vs_tgt.sh $ROUNDS\`."
  echo
  echo "| case | ours | tgt | ours / tgt | daemon CPU per op, us: ours | tgt |"
  echo "|---|---|---|---|---|---|"
  n=0
  for c in "${CASES[@]}"; do
    o=$(echo "${R[$c.ours]}" | median)
    g=$(echo "${R[$c.tgt]}" | median)
    ratio=$(awk -v a="$o" -v b="$g" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    echo "| ${LABEL[$c]} | $o | $g | $ratio | $(echo "${CPU[$c.ours]}" | median) | $(echo "${CPU[$c.tgt]}" | median) |"
    n=$((n + 1))
    echo "$n \"$c\" $ratio" >> "$RESULTS/vs_tgt.dat"
  done
  echo
  echo "Loopback TCP (iperf3, one stream): $IPERF MiB/s, the ceiling for large transfers."
  echo
  echo "| resident memory | ours | tgt |"
  echo "|---|---|---|"
  echo "| idle | $((RSS_IDLE[ours] / 1024)) MiB | $((RSS_IDLE[tgt] / 1024)) MiB |"
  echo "| 64 sessions, QD32 each | $((RSS_BUSY[ours] / 1024)) MiB | $((RSS_BUSY[tgt] / 1024)) MiB |"
  echo
  echo "Raw rounds: $(for k in "${!R[@]}"; do echo -n "$k=[${R[$k]% }] "; done)"
} | tee "$RESULTS/vs_tgt.md"

gnuplot <<GP
set terminal pngcairo size 900,480 noenhanced
set output "$RESULTS/vs_tgt.png"
set title "ours / tgtd (median of $ROUNDS rounds; 1.0 = parity)"
set style fill solid 0.8
set boxwidth 0.6
set yrange [0:*]
set xtics rotate by -30
set grid ytics
plot "$RESULTS/vs_tgt.dat" using 1:3:xtic(2) with boxes notitle, 1 with lines dt 2 notitle
GP
echo "chart: $RESULTS/vs_tgt.png"
cleanup
trap - EXIT
exit 0
