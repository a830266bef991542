#!/usr/bin/env bash
# CHAP and the initiator ACL through a real applianced, with libiscsi's tools:
# the right secret logs in (one-way and mutual), a wrong one gets login status
# 0x0201 (authentication failure), an initiator outside the ACL 0x0202
# (authorization failure), and a target that answers mutual CHAP wrongly is
# refused by the initiator.
set -euo pipefail
APPLIANCED=$(realpath "$1")
APPLIANCECTL=$(realpath "$2")
source "$(dirname "$0")/lib.sh"
DIR=$(mktemp -d "${TEST_TMPDIR:-/tmp}/chap.XXXXXX")
LIF_PORT=0 write_bootstrap "$DIR" node-a '
seed_luns { id: 0 name: "c" size_bytes: 1048576 }
security {
  require_chap: true
  chap { initiator_name: "iqn.2026-11.test:good" user: "alice" secret: "alice-secret-123" }
  chap { initiator_name: "iqn.2026-11.test:mutual" user: "bob" secret: "bob-secret-1234"
         target_user: "tgt" target_secret: "target-secret-99" }
  allowed_initiators: "iqn.2026-11.test:good"
  allowed_initiators: "iqn.2026-11.test:mutual"
  allowed_initiators: "iqn.2026-11.test:nochap"
}'
start_node "$DIR" node-a
P=$(head -1 "$DIR/node-a/iscsi.portals")
T=iqn.2026-11.com.example:test

expect_ok() {  # description, then the command
  local what=$1; shift
  local out
  out=$("$@" 2>&1) || fail "$what: $out"
  grep -q "DIRECT_ACCESS" <<< "$out" || fail "$what: no inquiry data: $out"
}
expect_refused() {  # description, expected text, then the command
  local what=$1 text=$2; shift 2
  local out
  out=$("$@" 2>&1) && fail "$what: login succeeded"
  grep -q "$text" <<< "$out" || fail "$what: expected '$text', got: $out"
}

expect_ok "one-way CHAP" iscsi-inq -i iqn.2026-11.test:good \
  "iscsi://alice%alice-secret-123@$P/$T/0"
expect_refused "wrong secret" "Authentication failure(513)" \
  iscsi-inq -i iqn.2026-11.test:good "iscsi://alice%wrong-secret-12@$P/$T/0"
expect_refused "no CHAP when required" "Authentication failure(513)" \
  iscsi-inq -i iqn.2026-11.test:nochap "iscsi://$P/$T/0"
expect_refused "initiator outside the ACL" "Authorization failure(514)" \
  iscsi-inq -i iqn.2026-11.test:stranger "iscsi://alice%alice-secret-123@$P/$T/0"
LIBISCSI_CHAP_TARGET_USERNAME=tgt LIBISCSI_CHAP_TARGET_PASSWORD=target-secret-99 \
  expect_ok "mutual CHAP" iscsi-inq -i iqn.2026-11.test:mutual \
  "iscsi://bob%bob-secret-1234@$P/$T/0"
LIBISCSI_CHAP_TARGET_USERNAME=tgt LIBISCSI_CHAP_TARGET_PASSWORD=not-the-secret \
  expect_refused "target proves the wrong mutual secret" "Invalid CHAP_R" \
  iscsi-inq -i iqn.2026-11.test:mutual "iscsi://bob%bob-secret-1234@$P/$T/0"

# The daemon still serves after the refusals.
expect_ok "still serving" iscsi-inq -i iqn.2026-11.test:good \
  "iscsi://alice%alice-secret-123@$P/$T/0"
stop_node
echo PASS
