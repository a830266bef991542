#!/usr/bin/env python3
"""Parses iscsi-test-cu's verbose output into per-test results.

Usage:
  parse_test_cu.py OUTPUT.txt                      print "RESULT ALL.Suite.Test" lines
  parse_test_cu.py OUTPUT.txt --expect FILE        also compare with an expectations
                                                   file and exit 1 on a regression

A test is "failed" when CUnit reports FAILED for it, "skipped" when it passed but
printed a [SKIPPED] note (libiscsi's way of skipping: feature absent), else
"passed". The expectations file lists "passed ALL.Suite.Test" (and may list
skipped/failed tests with a reason after '#'); a test expected to pass that does
not pass is a regression.
"""
import re
import sys


def parse(text):
    results = {}
    suite = None
    current = None
    body = []

    def finish():
        if current is None:
            return
        joined = "\n".join(body)
        lines = [l.strip() for l in body]
        if any(l.endswith("FAILED") and not l.startswith("[FAILED]")
               for l in lines) or re.search(r"^\s*\d+\. .*", joined, re.M):
            outcome = "failed"
        elif "[SKIPPED]" in joined:
            outcome = "skipped"
        else:
            outcome = "passed"
        # A test run more than once (several families) keeps its worst outcome.
        name = f"ALL.{suite}.{current}"
        rank = {"passed": 0, "skipped": 1, "failed": 2}
        if rank[outcome] >= rank.get(results.get(name), -1):
            results[name] = outcome

    for line in text.splitlines():
        m = re.match(r"^Suite: (\S+)", line)
        if m:
            finish()
            current, body = None, []
            suite = m.group(1)
            continue
        m = re.match(r"^  Test: (\S+) \.\.\.(.*)$", line)
        if m:
            finish()
            current, body = m.group(1), [m.group(2)]
            continue
        if line.startswith("Run Summary:"):
            finish()
            current, body = None, []
            continue
        if current is not None:
            body.append(line)
    finish()
    return results


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    results = parse(open(args[0], errors="replace").read())
    counts = {k: sum(1 for v in results.values() if v == k)
              for k in ("passed", "skipped", "failed")}
    for name, outcome in sorted(results.items()):
        print(f"{outcome} {name}")
    print(f"conformance: {counts['passed']} passed, {counts['skipped']} skipped, "
          f"{counts['failed']} failed of {len(results)}", file=sys.stderr)
    if "--expect" in args:
        expected = {}
        for line in open(args[args.index("--expect") + 1]):
            line = line.split("#", 1)[0].strip()
            if line:
                outcome, name = line.split()
                expected[name] = outcome
        regressions = [n for n, o in expected.items()
                       if o == "passed" and results.get(n) != "passed"]
        for n in regressions:
            print(f"REGRESSION {n}: expected passed, got {results.get(n, 'not run')}",
                  file=sys.stderr)
        newly = [n for n, o in results.items()
                 if o == "passed" and expected.get(n) != "passed"]
        for n in newly:
            print(f"newly passing (add to expectations): {n}", file=sys.stderr)
        if regressions:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
