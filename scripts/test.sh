#!/usr/bin/env bash
# Runs every test inside a fresh network namespace that has only `lo`, so that no test can send
# traffic anywhere but 127.0.0.1, and a private mount namespace, so that a test may mount a tiny
# filesystem (the disk-full test) that no one else sees. Extra arguments go to vitest.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p test-results
rm -f test-results/results.json
set +e
export UV_THREADPOOL_SIZE=${UV_THREADPOOL_SIZE:-64}  # pipelines in the test workers each hold a pool thread
unshare -n -m -- bash -c 'ip link set lo up && export MCU_TEST_OWN_MOUNTS=1 && exec node node_modules/vitest/vitest.mjs run --reporter=default --reporter=json --outputFile.json=test-results/results.json "$@"' vitest "$@"
rc=$?
set -e
# One plain closing line that any CI can read.
node -e '
  const r = JSON.parse(require("fs").readFileSync("test-results/results.json", "utf8"));
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' 2>/dev/null || echo "0 passed, 1 failed"
exit $rc
