#!/usr/bin/env bash
# Where the time goes (a benchmark tool, not a test).
#
#   bench/profile.sh [CASES] [RESULTS_DIR]
#
# Starts one node (LUN 0 on a 1 GiB file, portal 127.0.0.10:3260, as in
# bench/vs_tgt.sh), lays data down, then for each case (default
# "read_4k_qd1 read_4k_qd32 write_4k_qd32 read_1m_qd8") runs the client
# while `perf record -e cpu-clock -g` samples the whole machine (this VM has
# no hardware counters; cpu-clock is a timer sample). For each case it writes
# RESULTS_DIR/profile_CASE.txt: the operations per second, CPU time per
# operation of the daemon and of the whole machine (from /proc over the same
# window), the daemon's share per thread, per library, and its top symbols.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CASES=${1:-"read_4k_qd1 read_4k_qd32 write_4k_qd32 read_1m_qd8"}
RESULTS=${2:-bench/results}
IP=127.0.0.10
TARGET=iqn.2026-11.com.example:profile
SIZE=$((1 << 30))
bash scripts/install-deps
dpkg-query -W -f='${Status}' linux-perf 2>/dev/null | grep -q "ok installed" ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf > /dev/null
bazel build //appliance/daemon:applianced >&2

DIR=$(mktemp -d /tmp/profile.XXXXXX)
PID=""
cleanup() {
  if [[ -n $PID ]]; then kill -TERM "$PID" 2>/dev/null || true; fi
  wait 2>/dev/null || true
}
trap cleanup EXIT
mkdir -p "$DIR/shared"
cat > "$DIR/bootstrap.textproto" <<CFG
node_name: "node-a"
target_name: "$TARGET"
lifs { name: "lif-a" address: "$IP" port: 3260 relative_target_port_id: 1 target_portal_group: 1 }
mgmt_address: "$IP:0"
shared_storage_dir: "$DIR/shared"
state_dir: "$DIR"
seed_luns { id: 0 name: "profile" size_bytes: $SIZE }
CFG
"$ROOT/bazel-bin/appliance/daemon/applianced" --config="$DIR/bootstrap.textproto" \
  > "$DIR/out" 2>&1 &
PID=$!
for _ in $(seq 100); do [[ -s $DIR/iscsi.portals ]] && break; sleep 0.1; done
URL="iscsi://$IP:3260/$TARGET/0"

qemu_bench() {  # count depth size write(0/1) -> ops per second
  local args=(-f raw -c "$1" -d "$2" -s "$3" -S "$3")
  (($4)) && args+=(-w)
  local secs
  secs=$(qemu-img bench "${args[@]}" "$URL" 2>&1 | awk '/Run completed/ {print $4}')
  awk -v c="$1" -v s="$secs" 'BEGIN { printf "%.0f\n", (s > 0 ? c / s : 0) }'
}
read_4k_qd1() { qemu_bench 20000 1 4096 0; }
write_4k_qd1() { qemu_bench 10000 1 4096 1; }
read_4k_qd32() { qemu_bench 150000 32 4096 0; }
write_4k_qd32() { qemu_bench 100000 32 4096 1; }
read_1m_qd8() { qemu_bench 3000 8 1M 0; }
write_1m_qd8() { qemu_bench 3000 8 1M 1; }

qemu_bench 1024 8 1M 1 > /dev/null  # reads hit allocated blocks

TICK=$(getconf CLK_TCK)
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
mkdir -p "$RESULTS"
for c in $CASES; do
  out="$RESULTS/profile_$c.txt"
  d0=$(proc_ticks "$PID") m0=$(machine_ticks) t0=$(date +%s.%N)
  perf record -q -e cpu-clock -a -g -o "$DIR/perf.data" -- bash -c "$(declare -f qemu_bench $c); URL=$URL; $c" \
    > "$DIR/rate" 2> "$DIR/perf.err"
  t1=$(date +%s.%N) d1=$(proc_ticks "$PID") m1=$(machine_ticks)
  rate=$(tail -1 "$DIR/rate")
  report() { perf report -i "$DIR/perf.data" --no-children -g none --stdio "$@" 2>/dev/null |
               grep -v '^#' | grep -v '^$'; }
  {
    echo "# $c: $rate operations/s ($(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d), bench/profile.sh)"
    awk -v d=$((d1 - d0)) -v m=$((m1 - m0)) -v hz="$TICK" -v t0="$t0" -v t1="$t1" -v r="$rate" 'BEGIN {
      w = t1 - t0; k = 1e6 / (hz * w * (r > 0 ? r : 1));
      printf "CPU per operation: daemon %.1f us, whole machine (client, kernel, perf) %.1f us\n", d * k, m * k }'
    echo
    echo "## whole machine by command (share of all samples)"
    report --sort comm | awk 'NR <= 12'
    echo
    echo "## applianced by thread"
    report --pid "$PID" --sort comm | awk 'NR <= 12'
    echo
    echo "## applianced by library"
    report --pid "$PID" --sort dso | awk 'NR <= 12'
    echo
    echo "## applianced top symbols"
    report --pid "$PID" --sort dso,sym | awk 'NR <= 30'
  } > "$out"
  echo "$c: $rate ops/s -> $out" >&2
done
