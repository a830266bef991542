#!/usr/bin/env bash
# Builds the iSCSI libFuzzer targets with clang (-fsanitize=fuzzer,address,
# undefined; outside Bazel, linking Abseil, ISA-L and OpenSSL from the system)
# and runs each for a bounded time on a copy of its checked-in corpus.
#
#   tests/iscsi/fuzz/run_fuzzers.sh [-t SECONDS_PER_FUZZER] [-o OUT_DIR] [FUZZER...]
#
# FUZZER is pdu, login_keys or connection (default: all three). Exit status is
# non-zero if a fuzzer finds a crash, a sanitizer report, a leak or a timeout;
# the reproducer (crash-*, leak-*, timeout-*) is left in OUT_DIR/<fuzzer>/.
#
# Debian packages: clang-14 libclang-rt-14-dev (libFuzzer and the sanitizer
# runtimes) plus the project's usual libabsl-dev libisal-dev libssl-dev.
set -euo pipefail

SECONDS_EACH=30
OUT=""
while getopts "t:o:" opt; do
  case $opt in
    t) SECONDS_EACH=$OPTARG ;;
    o) OUT=$OPTARG ;;
    *) echo "usage: $0 [-t seconds] [-o out_dir] [pdu|login_keys|connection ...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
FUZZERS=("$@")
((${#FUZZERS[@]})) || FUZZERS=(pdu login_keys connection)

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/iscsi-fuzz.XXXXXX")}
mkdir -p "$OUT/obj"

CXX=""
for c in clang++-14 clang++; do
  if command -v "$c" > /dev/null; then CXX=$c; break; fi
done
[[ -n $CXX ]] || { echo "clang++ not found (Debian: clang-14 libclang-rt-14-dev)" >&2; exit 2; }

SAN="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
CXXFLAGS=(-std=c++17 -O1 -g -fno-omit-frame-pointer -I"$ROOT" -Wall -Wno-unused-parameter)
# The Abseil libraries the project links (third_party/system/system.BUILD).
ABSL_LIBS=$(grep -o -- '"-labsl_[a-z0-9_]*"' "$ROOT/third_party/system/system.BUILD" \
              | tr -d '"' | awk '!seen[$0]++' | tr '\n' ' ')
LIBS="$ABSL_LIBS -lisal -lssl -lcrypto -lpthread -lrt"

PROTOCOL_SRCS=(chap login negotiation options pdu text)
SERVER_SRCS=(connection event_loop server session_registry)
COMMON_SRCS=(defer_scope)

# Objects of target/iscsi, built once with the fuzzing instrumentation
# (-fsanitize=fuzzer-no-link: coverage without libFuzzer's main).
compile() {
  local src=$1 obj=$2
  if [[ ! -f $obj || $src -nt $obj ]]; then
    echo "compile $src"
    $CXX "${CXXFLAGS[@]}" ${SAN/fuzzer,/fuzzer-no-link,} -c "$src" -o "$obj"
  fi
}
OBJS_PROTOCOL=()
for s in "${PROTOCOL_SRCS[@]}"; do
  compile "$ROOT/target/iscsi/$s.cc" "$OUT/obj/$s.o"
  OBJS_PROTOCOL+=("$OUT/obj/$s.o")
done
OBJS_SERVER=()
for s in "${SERVER_SRCS[@]}"; do
  compile "$ROOT/target/iscsi/$s.cc" "$OUT/obj/$s.o"
  OBJS_SERVER+=("$OUT/obj/$s.o")
done
# What the server part uses from common/ (the event loop's DeferScope).
for s in "${COMMON_SRCS[@]}"; do
  compile "$ROOT/common/$s.cc" "$OUT/obj/common_$s.o"
  OBJS_SERVER+=("$OUT/obj/common_$s.o")
done

status=0
for f in "${FUZZERS[@]}"; do
  case $f in
    pdu|login_keys) objs=("${OBJS_PROTOCOL[@]}") ;;
    connection) objs=("${OBJS_SERVER[@]}" "${OBJS_PROTOCOL[@]}") ;;
    *) echo "unknown fuzzer $f" >&2; exit 2 ;;
  esac
  bin="$OUT/${f}_fuzzer"
  echo "link $bin"
  # shellcheck disable=SC2086
  $CXX "${CXXFLAGS[@]}" $SAN "$ROOT/tests/iscsi/fuzz/${f}_fuzzer.cc" "${objs[@]}" \
    -o "$bin" $LIBS
  work="$OUT/$f"
  mkdir -p "$work/corpus"
  cp "$ROOT/tests/iscsi/fuzz/corpus/$f/"* "$work/corpus/"
  echo "run $f for ${SECONDS_EACH}s"
  # The connection fuzzer drives a real server over loopback: allow it more
  # time per input (its own deadline is 10 s) and do not count the server's
  # long-lived allocations at exit as leaks of one input.
  extra=()
  [[ $f == connection ]] && extra=(-timeout=30 -detect_leaks=0)
  if (cd "$work" && "$bin" -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
        -max_len=65536 "${extra[@]}" corpus > "$work/log.txt" 2>&1); then
    echo "ok   $f: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$work/log.txt" \
                      | grep -o '[0-9]*$') executions"
  else
    status=1
    echo "FAIL $f: see $work/log.txt"
    grep -m5 -E 'ERROR|SUMMARY|runtime error|Test unit written' "$work/log.txt" || true
  fi
done
echo "output in $OUT"
exit $status
