#!/usr/bin/env python3
"""Prints the README's conformance table from expected.txt (one source of truth)."""
import collections
import os
import sys

path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "expected.txt")
counts = collections.Counter()
by_reason = collections.defaultdict(list)
for line in open(path):
    text, _, reason = line.partition("#")
    text = text.strip()
    if not text:
        continue
    outcome, name = text.split()
    counts[outcome] += 1
    if outcome != "passed":
        by_reason[(outcome, reason.strip())].append(name.removeprefix("ALL."))
total = sum(counts.values())
print(f"`iscsi-test-cu --dataloss --test=ALL` (libiscsi 1.19): **{counts['passed']} passed, "
      f"{counts['skipped']} skipped, {counts['failed']} failed** of {total}.\n")
print("| outcome | tests | reason |")
print("|---|---|---|")
for (outcome, reason), names in sorted(by_reason.items()):
    print(f"| {outcome} | {', '.join(sorted(names))} | {reason} |")
