#!/usr/bin/env bash
# Runs libiscsi's iscsi-test-cu (family ALL, destructive tests allowed) against a
# real applianced on 127.0.0.1 with kernel-chosen ports, prints each test's
# outcome and the counts, and compares with an expectations file.
#
#   run.sh APPLIANCED APPLIANCECTL [--expect FILE] [--junit FILE] [--keep DIR]
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
DIR=$(mktemp -d "${TEST_TMPDIR:-/tmp}/conformance.XXXXXX")
LIF_PORT=0 write_bootstrap "$DIR" node-a \
  'seed_luns { id: 0 name: "conformance" size_bytes: 134217728 }'
start_node "$DIR" node-a
trap 'kill -TERM $NODE_PID 2>/dev/null || true' EXIT
PORTAL=$(head -1 "$DIR/node-a/iscsi.portals")
URL="iscsi://$PORTAL/iqn.2026-11.com.example:test/0"
echo "iscsi-test-cu against $URL (second path for MultipathIO: same portal)"
# Two URLs: the MultipathIO family uses the second as another I_T nexus.
timeout 1200 iscsi-test-cu --dataloss --test=ALL "$URL" "$URL" \
  > "$DIR/test-cu.txt" 2>&1 || true
args=("$DIR/test-cu.txt")
[[ -n $EXPECT ]] && args+=(--expect "$EXPECT")
[[ -n $JUNIT ]] && args+=(--junit "$JUNIT")
rc=0
python3 "$HERE/parse_test_cu.py" "${args[@]}" || rc=$?
stop_node
trap - EXIT
exit $rc
