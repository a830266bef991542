#!/usr/bin/env bash
# Bazel entry: per-test results go to Bazel's JUnit file so scripts/test counts them.
set -euo pipefail
HERE=$(dirname "$0")
exec bash "$HERE/run.sh" "$1" "$2" --expect "$HERE/expected.txt" \
  --junit "${XML_OUTPUT_FILE:-/dev/null}"
