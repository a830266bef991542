#!/usr/bin/env bash
# The partner pair end to end, with real initiators (libiscsi tools, qemu-img):
# both LIFs present every LUN; data written through the partner's LIF (proxied
# over the interconnect) reads back identical through the owner's; the proxied
# path passes the same iscsi-test-cu list as the direct one, with MultipathIO
# using both LIFs; a LUN created through one node's REST endpoint is served by
# both; when the owner dies, proxied commands fail fast with NOT READY (ALUA
# unavailable) instead of hanging, and recover when it returns.
set -euo pipefail
export APPLIANCED=$(realpath "$1")
export APPLIANCECTL=$(realpath "$2")
export PAIR_CERTS=$(realpath "$3")
HERE=$(cd "$(dirname "$0")" && pwd)
PAIR=$HERE/../harness/pair
export PAIR_ISCSI_PORT=13260 PAIR_MGMT_PORT=18443 PAIR_IC_PORT=17100
DIR=$(mktemp -d "${TEST_TMPDIR:-/tmp}/pair.XXXXXX")
fail() { echo "FAIL: $*" >&2; "$PAIR" down "$DIR" > /dev/null 2>&1 || true; exit 1; }
trap '"$PAIR" down "$DIR" > /dev/null 2>&1 || true' EXIT
T=iqn.2026-11.com.example:appliance
A=127.0.0.2:$PAIR_ISCSI_PORT
B=127.0.0.3:$PAIR_ISCSI_PORT

"$PAIR" up "$DIR" > /dev/null || fail "pair up"
python3 - "$DIR/pair.json" <<'PY' || fail "pair.json"
import json, sys
p = json.load(open(sys.argv[1]))
assert [n["name"] for n in p["nodes"]] == ["node-a", "node-b"], p
assert all(n["running"] and n["rest_url"] and n["token"] for n in p["nodes"]), p
assert {l["name"]: l["hosting_node"] for l in p["lifs"]} == {"lif-a": "node-a", "lif-b": "node-b"}
assert {l["number"]: l["owner"] for l in p["luns"]} == {0: "node-a", 1: "node-b"}
PY

# Every LIF presents every LUN of the pair (replicated inventory).
for portal in "$A" "$B"; do
  for _ in $(seq 50); do
    out=$(iscsi-ls -s "iscsi://$portal" 2>&1 || true)
    grep -q "Lun:0" <<< "$out" && grep -q "Lun:1" <<< "$out" && break
    sleep 0.1
  done
  grep -q "Lun:0" <<< "$out" && grep -q "Lun:1" <<< "$out" ||
    fail "$portal does not list both LUNs: $out"
done

# Proxied write, direct read (LUN 0 is node-a's) and the other way for LUN 1.
head -c 64M /dev/urandom > "$DIR/img"
qemu-img convert -n -f raw -O raw "$DIR/img" "iscsi://$B/$T/0" || fail "write via B"
qemu-img convert -f raw -O raw "iscsi://$A/$T/0" "$DIR/back" || fail "read via A"
cmp -n 67108864 "$DIR/img" "$DIR/back" || fail "LUN 0 via B then A differs"
qemu-img convert -n -f raw -O raw "$DIR/img" "iscsi://$A/$T/1" || fail "write LUN 1 via A"
qemu-img convert -f raw -O raw "iscsi://$B/$T/1" "$DIR/back1" || fail "read LUN 1 via B"
cmp -n 67108864 "$DIR/img" "$DIR/back1" || fail "LUN 1 via A then B differs"
# Both nodes count what crossed the interconnect: node-b forwarded LUN 0's
# commands (TMFs travel too: messages are not bounded by commands) and node-a
# served them.
metric() { "$PAIR" metrics "$DIR" "$1" | awk -v m="$2" '$1 == m {print $2}'; }
forwarded=$(metric node-b appliance_proxy_forwarded_total)
batches=$(metric node-b appliance_proxy_batches_sent_total)
served=$(metric node-a appliance_proxy_served_total)
awk -v f="${forwarded:-0}" -v b="${batches:-0}" -v s="${served:-0}" \
  'BEGIN { exit !(f >= 64 && b >= 1 && s >= f) }' ||
  fail "proxy metrics: forwarded=$forwarded batches=$batches served=$served"

# Conformance through the proxy path, MultipathIO over both LIFs.
timeout 1200 iscsi-test-cu --dataloss --test=ALL "iscsi://$B/$T/0" "iscsi://$A/$T/0" \
  > "$DIR/test-cu.txt" 2>&1 || true
python3 "$HERE/../conformance/parse_test_cu.py" "$DIR/test-cu.txt" \
  --expect "$HERE/../conformance/expected.txt" > /dev/null ||
  fail "proxied conformance regressed: $(grep -h REGRESSION "$DIR"/*.txt 2>/dev/null)"

# A LUN created through node-b's REST endpoint, owned by node-a, is served by
# both nodes.
"$DIR/bin/appliancectl" --url="$(cat "$DIR/node-b/mgmt.url")" \
  --token_file="$DIR/node-b/mgmt.token" lun create made-on-b 16M --id=2 \
  --owner=node-a > /dev/null || fail "create through node-b"
for portal in "$A" "$B"; do
  ok=0
  for _ in $(seq 50); do
    if iscsi-readcapacity16 "iscsi://$portal/$T/2" 2>/dev/null | grep -q "Total size:16777216"; then
      ok=1; break
    fi
    sleep 0.1
  done
  ((ok)) || fail "LUN 2 not served through $portal"
done
"$DIR/bin/appliancectl" --url="$(cat "$DIR/node-a/mgmt.url")" \
  --token_file="$DIR/node-a/mgmt.token" --json lun show 2 | grep -q made-on-b ||
  fail "node-a's REST does not know LUN 2"

# The owner dies: proxied commands end quickly with NOT READY, node-b's own LUN
# keeps working; when node-a returns, the proxy path works again and the data
# written through B before the kill is there (the conformance run overwrote
# LUN 0, so write the image again first).
qemu-img convert -n -f raw -O raw "$DIR/img" "iscsi://$B/$T/0" || fail "rewrite via B"
"$PAIR" kill "$DIR" node-a
start=$SECONDS
out=$(timeout 60 iscsi-readcapacity16 "iscsi://$B/$T/0" 2>&1) && fail "LUN 0 answered with its owner dead"
((SECONDS - start < 45)) || fail "proxied command took $((SECONDS - start)) s to fail"
grep -q "NOT READY(2).*0x040c" <<< "$out" || fail "expected NOT READY 04/0C, got: $out"
iscsi-readcapacity16 "iscsi://$B/$T/1" | grep -q "Total size:268435456" ||
  fail "node-b's own LUN stopped working"
"$PAIR" start "$DIR" node-a > /dev/null || fail "restart node-a"
ok=0
for _ in $(seq 100); do
  if iscsi-readcapacity16 "iscsi://$B/$T/0" 2>/dev/null | grep -q "Total size:268435456"; then
    ok=1; break
  fi
  sleep 0.2
done
((ok)) || fail "proxy path did not recover after node-a returned"
qemu-img convert -f raw -O raw "iscsi://$B/$T/0" "$DIR/back2" || fail "read after recovery"
cmp -n 67108864 "$DIR/img" "$DIR/back2" || fail "data written through B before the owner died is not there after its restart"

"$PAIR" down "$DIR" > /dev/null
trap - EXIT
echo PASS
