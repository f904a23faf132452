#!/usr/bin/env bash
# The test command of the README: formatting, lints, then every test of the workspace
# (unit, property, doc and end-to-end CLI tests), then the Nexmark queries checked against
# Apache Flink (installs PyFlink on first use; needs Java 17). Runs from any directory.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

if ! command -v tansu >/dev/null 2>&1 && [ -z "${TANSU:-}" ]; then
  echo "the Kafka end-to-end tests need the tansu broker: cargo install tansu --version 0.6.0 --features dynostore,libsql (.ci/run does it)" >&2
  exit 1
fi

echo "== cargo test"
cargo test --workspace --no-fail-fast

echo "== Nexmark queries against Apache Flink running their SQL"
bash scripts/nexmark-flink-check.sh

echo "== all tests passed"
