#!/usr/bin/env python3
"""Parses iscsi-test-cu's verbose output into per-test results.

Usage:
  parse_test_cu.py OUTPUT.txt                      print "RESULT ALL.Suite.Test" lines
  parse_test_cu.py OUTPUT.txt --expect FILE        also compare with an expectations
                                                   file and exit 1 on a regression
  parse_test_cu.py OUTPUT.txt ... --junit FILE     also write JUnit XML: one case per
                                                   test; only regressions are failures,
                                                   skips and known failures are skipped

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
    expected = {}
    reasons = {}
    regressions = []
    if "--expect" in args:
        for line in open(args[args.index("--expect") + 1]):
            text, _, reason = line.partition("#")
            text = text.strip()
            if text:
                outcome, name = text.split()
                expected[name] = outcome
                reasons[name] = reason.strip()
        regressions = [n for n, o in expected.items()
                       if o == "passed" and results.get(n) != "passed"]
        for n in regressions:
            print(f"REGRESSION {n}: expected passed, got {results.get(n, 'not run')}",
                  file=sys.stderr)
        newly = [n for n, o in results.items()
                 if o == "passed" and expected.get(n) != "passed"]
        for n in newly:
            print(f"newly passing (add to expectations): {n}", file=sys.stderr)
    if "--junit" in args:
        write_junit(args[args.index("--junit") + 1], results, expected, reasons,
                    set(regressions))
    return 1 if regressions else 0


def write_junit(path, results, expected, reasons, regressions):
    from xml.sax.saxutils import quoteattr
    with open(path, "w") as out:
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>\n')
        out.write(f'<testsuite name="iscsi-test-cu" tests="{len(results)}">\n')
        names = sorted(set(results) | {n for n, o in expected.items() if o == "passed"})
        for name in names:
            outcome = results.get(name, "not run")
            out.write(f'  <testcase name={quoteattr(name)} classname="conformance">')
            if name in regressions:
                out.write(f'<failure message={quoteattr("expected passed, got " + outcome)}/>')
            elif outcome == "skipped":
                why = reasons.get(name) or "skipped by iscsi-test-cu"
                out.write(f'<skipped message={quoteattr(why)}/>')
            elif outcome != "passed":
                why = "known failure: " + (reasons.get(name) or "not yet fixed")
                out.write(f'<skipped message={quoteattr(why)}/>')
            out.write('</testcase>\n')
        out.write('</testsuite>\n</testsuites>\n')


if __name__ == "__main__":
    sys.exit(main())
