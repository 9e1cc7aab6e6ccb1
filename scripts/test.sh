#!/usr/bin/env bash
# Runs every test: type check, unit, property/fuzz, and the real-component integration tests
# (netns + veth, Debian's evse/pev, tshark, swtpm, mosquitto, real TLS). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
mkdir -p test-results
rc=0
npm test -- --reporter=default --reporter=json --outputFile.json=test-results/vitest.json "$@" || rc=$?
# One closing line a CI reader understands in any language: "N passed, N failed, N skipped".
node -e '
  const fs = require("node:fs");
  try {
    const r = JSON.parse(fs.readFileSync("test-results/vitest.json", "utf8"));
    // A file that failed before running any test (e.g. a missing prerequisite under CI) counts as one failure.
    const brokenFiles = r.testResults.filter((f) => f.status === "failed" && f.assertionResults.length === 0).length;
    console.log(`Tests: ${r.numPassedTests} passed, ${r.numFailedTests + brokenFiles} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
  } catch { console.log("Tests: 0 passed, 1 failed"); }
'
exit $rc
