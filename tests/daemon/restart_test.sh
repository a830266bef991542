#!/usr/bin/env bash
# A LUN created through REST and through appliancectl survives a daemon restart
# with the same identity; deleting it removes its backing file; bad requests
# change nothing; SIGTERM stops the daemon cleanly.
set -euo pipefail
APPLIANCED=$(realpath "$1")
APPLIANCECTL=$(realpath "$2")
source "$(dirname "$0")/lib.sh"
DIR=$(mktemp -d "${TEST_TMPDIR:-/tmp}/restart.XXXXXX")
LIF_PORT=0 write_bootstrap "$DIR" node-a \
  'seed_luns { id: 0 name: "seed" size_bytes: 1048576 }'
start_node "$DIR" node-a

# Seeded LUN exists with its backing file.
[[ -f $DIR/shared/lun0-seed.img ]] || fail "seed LUN has no backing file"

# Create through REST.
code=$(api POST /api/v1/luns '{"name":"vol1","sizeBytes":"8388608","blockSize":4096}')
[[ $code == 201 ]] || fail "REST create answered $code: $(cat "$BODY_FILE")"
naa_vol1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["naaId"])' "$BODY_FILE")
[[ $naa_vol1 =~ ^6[0-9a-f]{31}$ ]] || fail "bad NAA id '$naa_vol1'"

# Create through appliancectl.
ctl lun create vol2 16M --id=7 > /dev/null || fail "appliancectl create failed"

# Bad requests: 400 / 409 / 401, and no trace left.
code=$(api POST /api/v1/luns '{"name":"bad","sizeBytes":"1000"}')
[[ $code == 400 ]] || fail "odd size answered $code"
code=$(api POST /api/v1/luns '{"name":"bad2",')
[[ $code == 400 ]] || fail "broken JSON answered $code"
code=$(api POST /api/v1/luns '{"name":"vol1","sizeBytes":"4096"}')
[[ $code == 409 ]] || fail "duplicate name answered $code"
grep -q '"error"' "$BODY_FILE" || fail "error reply has no error field"
code=$(curl -sk -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer wrong' "$URL/api/v1/luns")
[[ $code == 401 ]] || fail "wrong token answered $code"
code=$(curl -sk -o /dev/null -w '%{http_code}' "$URL/api/v1/luns")
[[ $code == 401 ]] || fail "missing token answered $code"
ls "$DIR/shared" | grep -q bad && fail "a rejected request left a backing file"

code=$(api GET /metrics)
[[ $code == 200 ]] || fail "metrics answered $code"
grep -q '^appliance_luns_online 3' "$BODY_FILE" || fail "metrics do not show 3 LUNs online"

stop_node
start_node "$DIR" node-a

# Everything is still there, with the same identity.
code=$(api GET /api/v1/luns)
[[ $code == 200 ]] || fail "list answered $code"
python3 - "$BODY_FILE" "$naa_vol1" <<'PY' || fail "LUNs after restart are wrong"
import json, sys
luns = {l["name"]: l for l in json.load(open(sys.argv[1]))["luns"]}
assert set(luns) == {"seed", "vol1", "vol2"}, luns.keys()
assert luns["vol1"]["naaId"] == sys.argv[2]
assert luns["vol1"]["blockSize"] == 4096
assert luns["vol2"]["id"] == "7" and luns["vol2"]["sizeBytes"] == "16777216"
PY
ctl --json lun show 7 | grep -q vol2 || fail "appliancectl show after restart"

# Delete removes the record and the backing file.
ctl lun delete 7 > /dev/null || fail "appliancectl delete failed"
[[ -e $DIR/shared/lun7-vol2.img ]] && fail "backing file of deleted LUN remains"
code=$(api GET /api/v1/luns/7)
[[ $code == 404 ]] || fail "deleted LUN answered $code"
code=$(api DELETE /api/v1/luns/7)
[[ $code == 404 ]] || fail "second delete answered $code"

stop_node
start_node "$DIR" node-a
code=$(api GET /api/v1/luns/7)
[[ $code == 404 ]] || fail "deleted LUN came back after restart ($code)"
stop_node
echo PASS
