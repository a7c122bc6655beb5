#!/usr/bin/env bash
# Runs node's test runner over the given compiled test files and fails when no test ran.
set -euo pipefail
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
node --test --test-reporter=spec --test-concurrency="${TEST_CONCURRENCY:-1}" "$@" 2>&1 | tee "$log" || status=$?
tests="$(sed -n 's/^ℹ tests \([0-9]*\)$/\1/p' "$log" | tail -1)"
if [ "${tests:-0}" -eq 0 ]; then
  echo "hack/test.sh: no test was executed" >&2
  exit 1
fi
exit "$status"
