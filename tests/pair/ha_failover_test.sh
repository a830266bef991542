#!/usr/bin/env bash
# The HA fault suite: SIGKILL the owner of a LUN at random moments under a
# mixed write load, HA_KILLS times (default 20), alternating node-a (LUN 0)
# and node-b (LUN 1). After each kill the survivor must take over (the LIF
# answers again at the same address), the killed node restarts fenced and gets
# its LUNs back by automatic giveback, and mirroring resumes. Two verifying
# load generators (tools/verifyload, on libiscsi) write self-describing blocks
# through the LUNs' home LIFs the whole time, reconnecting across every
# failover; at the end every acknowledged write must read back.
#
# Asserts: 0 acknowledged writes lost or corrupt; every kill taken over and
# given back; both takeover branches exercised over the run (committed NVLOG
# entries replayed, uncommitted ones dropped; up to 10 extra kills when the
# random moments missed one). Reports the time from kill to
# the first completed write on the survivor (median, worst).
#
#   ha_failover_test.sh APPLIANCED APPLIANCECTL PAIR_CERTS VERIFYLOAD PAIR
set -euo pipefail
export APPLIANCED=$(realpath "$1") APPLIANCECTL=$(realpath "$2")
export PAIR_CERTS=$(realpath "$3")
VERIFYLOAD=$(realpath "$4")
PAIR=$(realpath "$5")
KILLS=${HA_KILLS:-20}
export PAIR_DETECTION_MS=${PAIR_DETECTION_MS:-1000}
export PAIR_GIVEBACK_DELAY_MS=${PAIR_GIVEBACK_DELAY_MS:-500}
TARGET=iqn.2026-11.com.example:appliance
PORT=${PAIR_ISCSI_PORT:-3260}
declare -A LIF=([node-a]=127.0.0.2 [node-b]=127.0.0.3)
declare -A LUN=([node-a]=0 [node-b]=1)
declare -A PARTNER=([node-a]=node-b [node-b]=node-a)

DIR=$(mktemp -d "${TEST_TMPDIR:-/tmp}/ha-failover.XXXXXX")
LOADS=()
cleanup() {
  for pid in "${LOADS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  "$PAIR" down "$DIR" > /dev/null 2>&1 || true
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for n in node-a node-b; do
    echo "--- $n log tail" >&2
    tail -30 "$DIR/$n/applianced.out" >&2 || true
  done
  exit 1
}

# shellcheck source=tests/harness/ha_lib.sh
source "$(dirname "$PAIR")/ha_lib.sh"
in_takeover() { [[ $(ha_field "$1" 'd["state"]') == in_takeover ]]; }
# A 4 KiB write far above the load generators' region, through a LIF.
probe_write() { iscsi_write "$1:$PORT" "$2" 200M; }

"$PAIR" up "$DIR" > /dev/null
wait_for 30 "mirroring both ways" pair_normal

for node in node-a node-b; do
  "$VERIFYLOAD" --portal="${LIF[$node]}:$PORT" --target="$TARGET" \
    --lun="${LUN[$node]}" --initiator="iqn.2026-11.com.example:ha-load-$node" \
    --mode=load --duration=100000 --qd=8 --write_percent=70 --max_blocks=16 \
    --lba_count=32768 --seed=$RANDOM --ledger="$DIR/ledger-$node" \
    > "$DIR/load-$node.json" 2> "$DIR/load-$node.err" &
  LOADS+=($!)
done
sleep 2

times=()
replayed=0
dropped=0
# Kill moments are random: when KILLS kills have not yet hit both branches
# (an entry replayed, an uncommitted one dropped), up to 10 more kills run.
for ((i = 1; i <= KILLS || (i <= KILLS + 10 && (replayed == 0 || dropped == 0)); i++)); do
  victim=$([[ $((i % 2)) == 1 ]] && echo node-a || echo node-b)
  survivor=${PARTNER[$victim]}
  sleep "$(python3 -c 'import random; print(round(random.uniform(0.3, 1.5), 2))')"
  t0=$(date +%s%N)
  "$PAIR" kill "$DIR" "$victim"
  # Time to the first write completed through the victim's LIF, now served by
  # the survivor.
  deadline=$((SECONDS + 30))
  until probe_write "${LIF[$victim]}" "${LUN[$victim]}"; do
    ((SECONDS < deadline)) || fail "kill $i: no write completed on $survivor within 30 s"
    sleep 0.02
  done
  t1=$(date +%s%N)
  times+=($(((t1 - t0) / 1000000)))
  wait_for 10 "$survivor in takeover" in_takeover "$survivor"
  report=$(ha_field "$survivor" '"%s %s %s" % (d["lastTakeover"]["replayedEntries"], d["lastTakeover"]["droppedUncommitted"], d["lastTakeover"]["logConsistent"])')
  read -r r dr consistent <<< "$report"
  [[ $consistent == True ]] || fail "kill $i: $survivor found the NVLOG copy inconsistent"
  replayed=$((replayed + r))
  dropped=$((dropped + dr))
  echo "kill $i: $victim, first write on $survivor after ${times[-1]} ms; replayed $r, dropped $dr uncommitted"
  "$PAIR" start "$DIR" "$victim" > /dev/null
  wait_for 60 "giveback to $victim and mirroring" pair_normal
done

for pid in "${LOADS[@]}"; do kill -TERM "$pid"; done
for pid in "${LOADS[@]}"; do wait "$pid" || true; done
LOADS=()

lost_total=0
for node in node-a node-b; do
  tail -3 "$DIR/load-$node.err" >&2 || true
  if ! "$VERIFYLOAD" --portal="${LIF[$node]}:$PORT" --target="$TARGET" \
      --lun="${LUN[$node]}" --mode=verify --ledger="$DIR/ledger-$node" \
      > "$DIR/verify-$node.json" 2> "$DIR/verify-$node.err"; then
    cat "$DIR/verify-$node.json" "$DIR/verify-$node.err" >&2
  fi
  read -r acked lost corrupt hard retries <<< "$(python3 -c '
import json, sys
load = json.load(open(sys.argv[1])); v = json.load(open(sys.argv[2]))
print(load["writes_acked"], v["lost"], v["corrupt"], load["hard_errors"], load["retries"])' \
    "$DIR/load-$node.json" "$DIR/verify-$node.json")"
  echo "LUN ${LUN[$node]}: $acked writes acknowledged, $lost lost, $corrupt corrupt;" \
    "$retries retryable answers, $hard non-retryable errors"
  ((acked > 0)) || fail "LUN ${LUN[$node]}: the load acknowledged no write"
  # Takeover and giveback may only give the host retryable answers.
  ((hard == 0)) || fail "LUN ${LUN[$node]}: $hard non-retryable I/O errors"
  lost_total=$((lost_total + lost + corrupt))
done

python3 - "${times[@]}" <<'PY'
import statistics, sys
t = sorted(int(x) for x in sys.argv[1:])
print(f"kill -> first completed write on the survivor: median {statistics.median(t):.0f} ms, "
      f"worst {t[-1]} ms over {len(t)} kills")
PY
echo "NVLOG at takeovers: $replayed committed entries replayed, $dropped uncommitted dropped"
((lost_total == 0)) || fail "$lost_total acknowledged writes lost or corrupt"
((replayed > 0)) || fail "no takeover replayed a committed NVLOG entry (committed branch not exercised)"
((dropped > 0)) || fail "no takeover dropped an uncommitted NVLOG entry (uncommitted branch not exercised)"
echo "PASS: $((i - 1)) kills, 0 acknowledged writes lost"
