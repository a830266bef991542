#!/usr/bin/env bash
# HA failure detection on two links, and planned takeover:
#   1. interconnect cut (iptables): both nodes see the link lost, the mailbox
#      alive: no takeover; each keeps serving its own LUN (writes made
#      durable, reported unmirrored); proxied commands fail fast.
#   2. only node-a's mailbox writes stopped: no takeover.
#   3. both (interconnect cut and node-a's mailbox stopped): node-b takes
#      over, node-a stops serving on its own (isolated, then fenced): every
#      LUN is served by exactly one node, and node-a's LIF address answers
#      (served by node-b).
#   4. both restored: automatic giveback, both serve their own LUN again.
#   5. planned takeover through REST, no automatic giveback after it, manual
#      giveback.
#
#   ha_partition_test.sh APPLIANCED APPLIANCECTL PAIR_CERTS PAIR
set -euo pipefail
export APPLIANCED=$(realpath "$1") APPLIANCECTL=$(realpath "$2")
export PAIR_CERTS=$(realpath "$3")
PAIR=$(realpath "$4")
export PAIR_DETECTION_MS=${PAIR_DETECTION_MS:-1000}
export PAIR_GIVEBACK_DELAY_MS=${PAIR_GIVEBACK_DELAY_MS:-500}
PORT=${PAIR_ISCSI_PORT:-3260}

DIR=$(mktemp -d "${TEST_TMPDIR:-/tmp}/ha-partition.XXXXXX")
trap '"$PAIR" down "$DIR" > /dev/null 2>&1 || true' EXIT
fail() {
  echo "FAIL: $*" >&2
  for n in node-a node-b; do
    echo "--- $n" >&2
    "$PAIR" ha "$DIR" "$n" >&2 || true
    tail -20 "$DIR/$n/applianced.out" >&2 || true
  done
  exit 1
}
# shellcheck source=tests/harness/ha_lib.sh
source "$(dirname "$PAIR")/ha_lib.sh"
expect() {  # expect NODE EXPR WANT
  local got
  got=$(ha_field "$1" "$2")
  [[ $got == "$3" ]] || fail "$1: $2 is '$got', want '$3'"
}
write_ok() { iscsi_write "$1:$PORT" "$2" 100M; }  # write_ok LIF_ADDRESS LUN
# Every LUN served by exactly one node.
one_server_each() {
  python3 - "$(ha_field node-a 'd["lunsServed"]')" \
    "$(ha_field node-b 'd["lunsServed"]')" <<'PY'
import ast, sys
a, b = (set(ast.literal_eval(x)) for x in sys.argv[1:])
assert not (a & b), f"split brain: both serve {a & b}"
assert a | b == {"0", "1"}, f"unserved LUNs: a={a} b={b}"
PY
}
detect=$(python3 -c "print($PAIR_DETECTION_MS / 1000)")
settle() { sleep "$(python3 -c "print(3 * $detect)")"; }

"$PAIR" up "$DIR" > /dev/null
wait_for 30 "mirroring both ways" pair_normal

echo "1. interconnect cut"
"$PAIR" fault "$DIR" pair interconnect-cut
settle
for n in node-a node-b; do
  expect "$n" 'd["partnerVerdict"], d["takeovers"], d["state"]' \
    "interconnect_lost 0 active"
  expect "$n" 'd["takeoverPossible"]' "False"
done
one_server_each || fail "after the interconnect cut"
write_ok 127.0.0.2 0 || fail "node-a's own LUN not writable with the link cut"
write_ok 127.0.0.3 1 || fail "node-b's own LUN not writable with the link cut"
expect node-a 'int(d["unmirroredWrites"]) > 0' "True"
# Proxied: node-b's LUN through node-a's LIF fails fast with NOT READY.
start=$SECONDS
if write_ok 127.0.0.2 1; then fail "proxied write succeeded with the link cut"; fi
((SECONDS - start < 10)) || fail "proxied write took $((SECONDS - start)) s to fail"
"$PAIR" fault "$DIR" pair interconnect-restore
wait_for 30 "recovery after the cut" pair_normal

echo "2. node-a's mailbox writes stopped"
"$PAIR" fault "$DIR" node-a mailbox-stop > /dev/null
settle
expect node-b 'd["partnerVerdict"], d["takeovers"], d["state"]' "mailbox_lost 0 active"
expect node-a 'd["state"], d["selfIsolated"]' "active False"
one_server_each || fail "with node-a's mailbox stopped"
"$PAIR" fault "$DIR" node-a mailbox-start > /dev/null
settle

echo "3. interconnect cut and node-a's mailbox stopped"
"$PAIR" fault "$DIR" pair interconnect-cut
"$PAIR" fault "$DIR" node-a mailbox-stop > /dev/null
wait_for 30 "node-b in takeover" \
  bash -c "[[ \$('$PAIR' ha '$DIR' node-b | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"state\"])') == in_takeover ]]"
settle
expect node-b 'd["lunsServed"]' "['0', '1']"
expect node-a 'd["lunsServed"], d["state"]' "[] waiting_for_giveback"
one_server_each || fail "split brain with both links cut"
write_ok 127.0.0.2 0 || fail "node-a's LIF address does not serve LUN 0 (node-b should)"
echo "   node-b serves LUN 0 and 1, node-a serves nothing"

echo "4. both restored: automatic giveback"
"$PAIR" fault "$DIR" pair interconnect-restore
"$PAIR" fault "$DIR" node-a mailbox-start > /dev/null
wait_for 60 "automatic giveback" pair_normal
expect node-b 'd["givebacks"], d["lastGiveback"]["automatic"]' "1 True"
write_ok 127.0.0.2 0 || fail "LUN 0 not writable after giveback"

echo "5. planned takeover and manual giveback"
"$PAIR" takeover "$DIR" node-a > /dev/null || fail "planned takeover refused"
expect node-a 'd["state"], d["lunsServed"], d["lastTakeover"]["planned"]' \
  "in_takeover ['0', '1'] True"
expect node-b 'd["state"], d["lunsServed"]' "waiting_for_giveback []"
write_ok 127.0.0.3 1 || fail "LUN 1 not writable through node-b's moved LIF"
sleep 2  # longer than the giveback delay: a planned takeover stays
expect node-a 'd["state"]' "in_takeover"
"$PAIR" giveback "$DIR" node-a > /dev/null || fail "giveback refused"
wait_for 30 "manual giveback" pair_normal
write_ok 127.0.0.3 1 || fail "LUN 1 not writable after giveback"
echo "PASS"
