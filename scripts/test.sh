#!/usr/bin/env bash
# The one test command: installs what the tests need (scripts/install-test-deps.sh),
# then runs every test target. Extra arguments go to `cargo test`, e.g.
#   scripts/test.sh --test harness
#   scripts/test.sh -- --nocapture
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-test-deps.sh
exec cargo test --all-targets "$@"
