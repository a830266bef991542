# Helpers for tests that drive a real applianced process.
# Source it; needs APPLIANCED and APPLIANCECTL set to the binaries.

fail() { echo "FAIL: $*" >&2; exit 1; }

# write_bootstrap DIR NODE [extra textproto lines]: a one-node config on
# 127.0.0.1 with kernel-chosen ports, state in DIR/NODE, shared storage in DIR/shared.
write_bootstrap() {
  local dir=$1 node=$2
  shift 2
  mkdir -p "$dir/$node" "$dir/shared"
  cat > "$dir/$node/bootstrap.textproto" <<CFG
node_name: "$node"
target_name: "iqn.2026-11.com.example:test"
physical_ports { name: "e0a" address: "127.0.0.1" }
lifs { name: "lif-1" address: "127.0.0.1" port: ${LIF_PORT:-3260} home_node: "$node"
       home_port: "e0a" relative_target_port_id: 1 target_portal_group: 1 }
mgmt_address: "127.0.0.1:0"
shared_storage_dir: "$dir/shared"
state_dir: "$dir/$node"
$*
CFG
}

# start_node DIR NODE: starts applianced, waits until its REST endpoint answers.
# Sets NODE_PID, URL, TOKEN_FILE.
start_node() {
  local dir=$1 node=$2
  rm -f "$dir/$node/mgmt.url"
  "$APPLIANCED" --config="$dir/$node/bootstrap.textproto" \
    >> "$dir/$node/applianced.out" 2>&1 &
  NODE_PID=$!
  TOKEN_FILE=$dir/$node/mgmt.token
  local deadline=$((SECONDS + 30))
  while ((SECONDS < deadline)); do
    if [[ -s $dir/$node/mgmt.url ]]; then
      URL=$(cat "$dir/$node/mgmt.url")
      if curl -skf -H "Authorization: Bearer $(cat "$TOKEN_FILE")" \
           "$URL/api/v1/node" > /dev/null; then
        return 0
      fi
    fi
    kill -0 "$NODE_PID" 2>/dev/null || { cat "$dir/$node/applianced.out" >&2; fail "applianced exited"; }
    sleep 0.1
  done
  fail "applianced did not come up"
}

# stop_node: SIGTERM and expect a clean exit (status 0) within 20 s.
stop_node() {
  kill -TERM "$NODE_PID"
  local deadline=$((SECONDS + 20))
  while kill -0 "$NODE_PID" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "applianced did not stop on SIGTERM"
    sleep 0.1
  done
  wait "$NODE_PID"
  local rc=$?
  ((rc == 0)) || fail "applianced exited with $rc on SIGTERM"
}

ctl() { "$APPLIANCECTL" --url="$URL" --token_file="$TOKEN_FILE" "$@"; }

# api METHOD PATH [BODY]: prints the HTTP status code; the body goes to $BODY_FILE.
BODY_FILE=$(mktemp)
api() {
  local method=$1 path=$2 body=${3:-}
  local args=(-sk -o "$BODY_FILE" -w '%{http_code}' -X "$method"
              -H "Authorization: Bearer $(cat "$TOKEN_FILE")")
  [[ -n $body ]] && args+=(-H 'Content-Type: application/json' --data "$body")
  curl "${args[@]}" "$URL$path"
}
