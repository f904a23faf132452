#!/usr/bin/env bash
# The test command of the README: formatting, lints, then every test of the workspace
# (unit, property, doc and end-to-end CLI tests). Runs from any directory.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test"
cargo test --workspace --no-fail-fast

echo "== all tests passed"
