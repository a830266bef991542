#!/usr/bin/env python3
"""Parses iscsi-test-cu's output into per-test results, merging several passes.

Usage:
  parse_test_cu.py [PASS=]OUTPUT.txt ...            print "RESULT ALL.Suite.Test" lines
  parse_test_cu.py OUTPUT.txt ... --expect FILE     also compare with an expectations
                                                    file and exit 1 on a regression
  parse_test_cu.py OUTPUT.txt ... --junit FILE      also write JUnit XML: one case per
                                                    test; only regressions are failures,
                                                    skips and known failures are skipped

Each OUTPUT.txt is the output of one pass (one or more iscsi-test-cu runs against
one LUN); PASS names it (run.sh: physical-4k, read-only), a file without a name
is the "main" pass. A test is "failed" in a pass when CUnit reports FAILED for
it, "skipped" when it passed but printed a [SKIPPED] note (libiscsi's way of
skipping: feature absent), else "passed". Each test then gets one outcome from
the best evidence over the passes: failed if it failed in any pass, else passed
if it passed in any, else skipped.

The expectations file lists "OUTCOME ALL.Suite.Test [PASS]" with an optional
reason after '#'. PASS names the dedicated pass whose LUN the test needs (e.g.
4 KiB physical blocks); such a test is expected to pass only when that pass's
output is given, and elsewhere only not to fail (a single-pass run, like the
partner-pair suite's, skips it for the LUN's shape). A test expected to pass
that does not is a regression.
"""
import re
import sys

MAIN = "main"
RANK = {"passed": 0, "skipped": 1, "failed": 2}


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
        if RANK[outcome] >= RANK.get(results.get(name), -1):
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


def merge(passes):
    """One outcome per test: failed anywhere, else passed anywhere, else skipped."""
    merged = {}
    for results in passes.values():
        for name, outcome in results.items():
            old = merged.get(name)
            if old is None or outcome == "failed" or (
                    outcome == "passed" and old == "skipped"):
                merged[name] = outcome
    return merged


def counts_line(results):
    counts = {k: sum(1 for v in results.values() if v == k) for k in RANK}
    return (f"{counts['passed']} passed, {counts['skipped']} skipped, "
            f"{counts['failed']} failed of {len(results)}")


def read_expectations(path):
    """name -> (outcome, pass, reason)."""
    expected = {}
    for line in open(path):
        text, _, reason = line.partition("#")
        fields = text.split()
        if not fields:
            continue
        if len(fields) not in (2, 3) or fields[0] not in RANK:
            raise SystemExit(f"{path}: bad line: {line.rstrip()}")
        outcome, name = fields[0], fields[1]
        expected[name] = (outcome, fields[2] if len(fields) == 3 else MAIN,
                          reason.strip())
    return expected


def main():
    args = sys.argv[1:]
    options = {}
    files = []
    while args:
        arg = args.pop(0)
        if arg in ("--expect", "--junit"):
            if not args:
                print(__doc__, file=sys.stderr)
                return 2
            options[arg] = args.pop(0)
        else:
            files.append(arg)
    if not files:
        print(__doc__, file=sys.stderr)
        return 2
    passes = {}
    for spec in files:
        name, sep, path = spec.partition("=")
        if not sep or "/" in name:
            name, path = MAIN, spec
        if name in passes:
            print(f"pass {name} given twice", file=sys.stderr)
            return 2
        passes[name] = parse(open(path, errors="replace").read())
    results = merge(passes)
    for name, outcome in sorted(results.items()):
        print(f"{outcome} {name}")
    if len(passes) > 1:
        for name, pass_results in passes.items():
            print(f"pass {name}: {counts_line(pass_results)}", file=sys.stderr)
    print(f"conformance: {counts_line(results)}", file=sys.stderr)

    expected = {}
    regressions = []
    if "--expect" in options:
        expected = read_expectations(options["--expect"])
        for name, (outcome, pass_name, _) in expected.items():
            if outcome != "passed":
                continue
            got = results.get(name, "not run")
            if pass_name in passes or pass_name == MAIN:
                if got != "passed":
                    regressions.append(name)
            elif got == "failed":
                regressions.append(name)
            elif got != "passed":
                print(f"not covered: {name} needs pass {pass_name} ({got} here)",
                      file=sys.stderr)
        for n in regressions:
            print(f"REGRESSION {n}: expected passed, got {results.get(n, 'not run')}",
                  file=sys.stderr)
        newly = [n for n, o in results.items()
                 if o == "passed" and expected.get(n, ("",))[0] != "passed"]
        for n in newly:
            print(f"newly passing (add to expectations): {n}", file=sys.stderr)
    if "--junit" in options:
        write_junit(options["--junit"], results, expected, set(regressions))
    return 1 if regressions else 0


def write_junit(path, results, expected, regressions):
    from xml.sax.saxutils import quoteattr
    with open(path, "w") as out:
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>\n')
        out.write(f'<testsuite name="iscsi-test-cu" tests="{len(results)}">\n')
        names = sorted(set(results) |
                       {n for n, e in expected.items() if e[0] == "passed"})
        for name in names:
            outcome = results.get(name, "not run")
            reason = expected.get(name, ("", "", ""))[2]
            out.write(f'  <testcase name={quoteattr(name)} classname="conformance">')
            if name in regressions:
                out.write(f'<failure message={quoteattr("expected passed, got " + outcome)}/>')
            elif outcome == "skipped":
                why = reason or "skipped by iscsi-test-cu"
                out.write(f'<skipped message={quoteattr(why)}/>')
            elif outcome != "passed":
                why = "known failure: " + (reason or "not yet fixed")
                out.write(f'<skipped message={quoteattr(why)}/>')
            out.write('</testcase>\n')
        out.write('</testsuite>\n</testsuites>\n')


if __name__ == "__main__":
    sys.exit(main())
