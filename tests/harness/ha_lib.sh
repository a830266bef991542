# Shell helpers for HA tests and benchmarks over the pair harness. Source it
# after setting PAIR (the harness), DIR (the pair's directory) and defining
# fail MESSAGE (how the caller reports a failure).

# ha_field NODE EXPR: EXPR (Python over d, NODE's GET /api/v1/ha) printed.
ha_field() {
  "$PAIR" ha "$DIR" "$1" 2>/dev/null |
    python3 -c "import json,sys; d=json.load(sys.stdin); print($2)"
}

# wait_for SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds, or fail.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" > /dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${seconds}s waiting for $what"
    sleep 0.05
  done
}

# pair_normal: both nodes active, each serving its own LUN (node-a 0, node-b
# 1), writes mirrored both ways.
pair_normal() {
  [[ $(ha_field node-a 'd["state"], d["lunsServed"], d["takeoverPossible"]') == \
     "active ['0'] True" ]] &&
  [[ $(ha_field node-b 'd["state"], d["lunsServed"], d["takeoverPossible"]') == \
     "active ['1'] True" ]]
}

# iscsi_write ADDRESS:PORT LUN OFFSET: one 4 KiB write through qemu-io.
iscsi_write() {
  timeout 20 qemu-io -f raw -c "write -P 0x5a $3 4k" \
    "iscsi://$1/iqn.2026-11.com.example:appliance/$2" 2>&1 | grep -q "wrote 4096"
}
