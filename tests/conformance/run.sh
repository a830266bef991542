#!/usr/bin/env bash
# Runs libiscsi's iscsi-test-cu (destructive tests allowed) against a real
# applianced on 127.0.0.1 with kernel-chosen ports, prints each test's outcome
# and the counts, and compares with an expectations file.
#
#   run.sh APPLIANCED APPLIANCECTL [--expect FILE] [--junit FILE]
#
# Three seed LUNs, one pass each (expected.txt names the pass of each test that
# needs a dedicated one):
#   main         LUN 0, 512-byte blocks, physical = logical (the default, as
#                LIO fileio reports): the whole ALL family, MultipathIO with
#                the same portal as second path.
#   physical-4k  LUN 1, 512-byte logical / 4096-byte physical blocks (LBPPB 8):
#                the tests iscsi-test-cu skips with "LBPPB < 2", and
#                WriteAtomic16 again (its ATOMIC ALIGNMENT and GRANULARITY are
#                8 blocks there, 0 on LUN 0: VPD checks misaligned writes).
#   read-only    LUN 2, write-protected: ALL.ReadOnly (skipped unless the LU
#                reports WP).
# parse_test_cu.py merges them: a failure anywhere is a failure, else a pass
# anywhere is a pass.
#
# Exit status: 0 when no test expected to pass failed, 1 otherwise.
set -euo pipefail
APPLIANCED=$(realpath "$1")
APPLIANCECTL=$(realpath "$2")
shift 2
EXPECT=""
JUNIT=""
while (($#)); do
  case $1 in
    --expect) EXPECT=$(realpath "$2"); shift 2 ;;
    --junit) JUNIT=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../daemon/lib.sh"

# The tests that skip with "[SKIPPED] LBPPB < 2" on a LUN whose physical block
# is its logical block (check with the main pass's output).
PHYSICAL_4K_TESTS=(
  ALL.CompareAndWrite.InvalidDataOutSize
  ALL.WriteSame10.InvalidDataOutSize
  ALL.WriteSame10.UnmapUnaligned
  ALL.WriteSame16.InvalidDataOutSize
  ALL.WriteSame16.UnmapUnaligned
  ALL.WriteAtomic16
)
READ_ONLY_TESTS=(ALL.ReadOnly)

DIR=$(mktemp -d "${TEST_TMPDIR:-/tmp}/conformance.XXXXXX")
LIF_PORT=0 write_bootstrap "$DIR" node-a \
  'seed_luns { id: 0 name: "conformance" size_bytes: 134217728 }
   seed_luns { id: 1 name: "conformance-4k-physical" size_bytes: 67108864
               physical_block_size: 4096 }
   seed_luns { id: 2 name: "conformance-read-only" size_bytes: 16777216
               read_only: true }'
start_node "$DIR" node-a
trap 'kill -TERM $NODE_PID 2>/dev/null || true' EXIT
PORTAL=$(head -1 "$DIR/node-a/iscsi.portals")
TARGET=iscsi://$PORTAL/iqn.2026-11.com.example:test

# The LUN options reached the engine (READ CAPACITY(16) LBPPBE).
lbppbe() {
  iscsi-readcapacity16 "$TARGET/$1" |
    sed -n 's/.*LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT:\([0-9]*\).*/\1/p'
}
for lun_exp in 0:0 1:3 2:0; do
  got=$(lbppbe "${lun_exp%%:*}")
  [[ $got == "${lun_exp##*:}" ]] ||
    fail "LUN ${lun_exp%%:*}: LBPPBE '$got', expected ${lun_exp##*:}"
done

URL=$TARGET/0
echo "main: iscsi-test-cu --test=ALL against $URL (second path for MultipathIO: same portal)"
# Two URLs: the MultipathIO family uses the second as another I_T nexus.
timeout 1200 iscsi-test-cu --dataloss --test=ALL "$URL" "$URL" \
  > "$DIR/main.txt" 2>&1 || true
: > "$DIR/physical-4k.txt"
for t in "${PHYSICAL_4K_TESTS[@]}"; do
  echo "physical-4k: iscsi-test-cu --test=$t against $TARGET/1"
  timeout 300 iscsi-test-cu --dataloss --test="$t" "$TARGET/1" \
    >> "$DIR/physical-4k.txt" 2>&1 || true
done
: > "$DIR/read-only.txt"
for t in "${READ_ONLY_TESTS[@]}"; do
  echo "read-only: iscsi-test-cu --test=$t against $TARGET/2"
  timeout 300 iscsi-test-cu --dataloss --test="$t" "$TARGET/2" \
    >> "$DIR/read-only.txt" 2>&1 || true
done

args=("$DIR/main.txt" "physical-4k=$DIR/physical-4k.txt" "read-only=$DIR/read-only.txt")
[[ -n $EXPECT ]] && args+=(--expect "$EXPECT")
[[ -n $JUNIT ]] && args+=(--junit "$JUNIT")
rc=0
python3 "$HERE/parse_test_cu.py" "${args[@]}" || rc=$?
stop_node
trap - EXIT
exit $rc
