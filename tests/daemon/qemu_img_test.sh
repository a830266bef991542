#!/usr/bin/env bash
# qemu-img (a real initiator) writes a 64 MiB random image to a LUN of a real
# applianced and reads it back byte-identical: without digests and without CHAP,
# then with HeaderDigest=CRC32C and CHAP (the metrics must show a digest login).
set -euo pipefail
APPLIANCED=$(realpath "$1")
APPLIANCECTL=$(realpath "$2")
source "$(dirname "$0")/lib.sh"
DIR=$(mktemp -d "${TEST_TMPDIR:-/tmp}/qemu.XXXXXX")
LIF_PORT=0 write_bootstrap "$DIR" node-a '
seed_luns { id: 0 name: "plain" size_bytes: 67108864 }
seed_luns { id: 1 name: "secured" size_bytes: 67108864 block_size: 4096 }
security {
  chap { initiator_name: "iqn.2026-11.test:chap" user: "carol" secret: "carol-secret-42" }
}'
start_node "$DIR" node-a
P=$(head -1 "$DIR/node-a/iscsi.portals")
T=iqn.2026-11.com.example:test
head -c 64M /dev/urandom > "$DIR/one.img"
head -c 64M /dev/urandom > "$DIR/two.img"

# No digests, no CHAP (qemu's default initiator name has no CHAP account).
qemu-img convert -n -f raw -O raw "$DIR/one.img" "iscsi://$P/$T/0" || fail "write plain"
qemu-img convert -f raw -O raw "iscsi://$P/$T/0" "$DIR/one.back" || fail "read plain"
cmp "$DIR/one.img" "$DIR/one.back" || fail "plain image differs"

# Header digest CRC32C and CHAP, on a 4096-byte-block LUN.
OPTS="driver=iscsi,transport=tcp,portal=$P,target=$T,lun=1,user=carol"
OPTS+=",password=carol-secret-42,initiator-name=iqn.2026-11.test:chap,header-digest=crc32c"
qemu-img convert -n -f raw --target-image-opts "$DIR/two.img" "$OPTS" || fail "write secured"
qemu-img convert --image-opts "$OPTS" -O raw "$DIR/two.back" || fail "read secured"
cmp "$DIR/two.img" "$DIR/two.back" || fail "secured image differs"

# A wrong secret is refused; the data of LUN 0 is untouched.
BAD="driver=iscsi,transport=tcp,portal=$P,target=$T,lun=0,user=carol"
BAD+=",password=not-carols-pass,initiator-name=iqn.2026-11.test:chap"
qemu-img convert -n -f raw --target-image-opts "$DIR/two.img" "$BAD" 2> "$DIR/err" &&
  fail "wrong CHAP secret accepted"
grep -q "Authentication failure" "$DIR/err" || fail "unexpected error: $(cat "$DIR/err")"
qemu-img convert -f raw -O raw "iscsi://$P/$T/0" "$DIR/one.again" || fail "re-read plain"
cmp "$DIR/one.img" "$DIR/one.again" || fail "plain image changed"

code=$(api GET /metrics)
[[ $code == 200 ]] || fail "metrics answered $code"
digests=$(awk '/^appliance_iscsi_header_digest_logins_total/ {print $2}' "$BODY_FILE")
[[ ${digests:-0} != 0 ]] || fail "no login negotiated HeaderDigest=CRC32C"
stop_node
echo PASS
