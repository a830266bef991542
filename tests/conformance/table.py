#!/usr/bin/env python3
"""Prints the README's conformance table from expected.txt (one source of truth)."""
import collections
import os
import sys

path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "expected.txt")
counts = collections.Counter()
by_reason = collections.defaultdict(list)
passes = {}  # name -> description, in file order
in_pass = collections.defaultdict(list)
for line in open(path):
    if line.startswith("#pass "):
        name, _, description = line[len("#pass "):].partition(":")
        passes[name.strip()] = description.strip()
        continue
    text, _, reason = line.partition("#")
    fields = text.split()
    if not fields:
        continue
    outcome, name = fields[0], fields[1]
    short = name.removeprefix("ALL.")
    counts[outcome] += 1
    if len(fields) > 2:
        in_pass[fields[2]].append(short)
    if outcome != "passed":
        by_reason[(outcome, reason.strip())].append(short)
total = sum(counts.values())
print(f"`iscsi-test-cu --dataloss` (libiscsi 1.19), {len(passes) or 1} passes merged: "
      f"**{counts['passed']} passed, {counts['skipped']} skipped, "
      f"{counts['failed']} failed** of {total}.\n")
if passes:
    print("| pass | LUN | tests measured there |")
    print("|---|---|---|")
    for name, description in passes.items():
        tests = ", ".join(sorted(in_pass[name])) or "every other test"
        print(f"| {name} | {description} | {tests} |")
    print()
print("| outcome | tests | reason |")
print("|---|---|---|")
for (outcome, reason), names in sorted(by_reason.items()):
    print(f"| {outcome} | {', '.join(sorted(names))} | {reason} |")
