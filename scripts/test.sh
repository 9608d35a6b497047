#!/usr/bin/env bash
# The one test command: installs what the tests need (scripts/install-test-deps.sh), checks
# formatting and clippy, then runs every test target. Extra arguments go to `cargo test`, e.g.
#   scripts/test.sh --test harness
#   scripts/test.sh -- --nocapture
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-test-deps.sh

# The lint gate first: formatting and clippy (warnings are errors, with the [lints] of
# Cargo.toml), so neither depends on anyone remembering.
if ! cargo fmt --version >/dev/null 2>&1; then
    echo "test.sh: error: cargo fmt is missing (rustup component add rustfmt)" >&2
    exit 1
fi
if ! cargo clippy --version >/dev/null 2>&1; then
    echo "test.sh: error: cargo clippy is missing (rustup component add clippy)" >&2
    exit 1
fi
echo "test.sh: cargo fmt --check" >&2
cargo fmt --check
echo "test.sh: cargo clippy --all-targets -- -D warnings" >&2
cargo clippy --all-targets -- -D warnings

exec cargo test --all-targets "$@"
