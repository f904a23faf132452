#!/usr/bin/env bash
# The test command of the README: installs what the tests need and the machine lacks
# (scripts/test-deps.sh: the tansu broker, Java 17), then formatting, lints, every test of the
# workspace (unit, property, doc and end-to-end CLI tests), then the Nexmark queries checked
# against Apache Flink (installs PyFlink on first use). Runs from any directory.
#
# When something cannot be installed (no network, no root for apt), the tests that need it are
# skipped, the others run, and the end says which were skipped and the command that enables
# them; the script then exits non-zero, so a partial run is never taken for a full one.
set -euo pipefail
cd "$(dirname "$0")/.."

skipped=()
if ! bash scripts/test-deps.sh; then
  echo "some test dependencies could not be installed: running the tests that do not need them" >&2
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "== the engine builds without Kafka (cargo feature 'kafka' off: no librdkafka)"
if cargo tree -p riffle-runtime --no-default-features -e normal | grep -q rdkafka; then
  echo "riffle-runtime without default features still depends on rdkafka" >&2
  exit 1
fi
cargo check -p riffle-runtime -p riffle-connectors --no-default-features

echo "== cargo test"
if command -v tansu >/dev/null 2>&1 || [ -n "${TANSU:-}" ]; then
  cargo test --workspace --no-fail-fast
else
  # Everything but the tests that start a tansu broker (the kafka_broker test target).
  cargo test --workspace --no-fail-fast --exclude riffle-cli
  targets=()
  for t in crates/riffle-cli/tests/*.rs; do
    name=$(basename "$t" .rs)
    [ "$name" = kafka_broker ] || targets+=(--test "$name")
  done
  cargo test -p riffle-cli --no-fail-fast --bins "${targets[@]}"
  skipped+=("the Kafka broker tests (crates/riffle-cli/tests/kafka_broker.rs): cargo install tansu --version 0.6.0 --features dynostore,libsql")
fi

if command -v java >/dev/null 2>&1; then
  echo "== Nexmark queries against Apache Flink running their SQL"
  bash scripts/nexmark-flink-check.sh
else
  skipped+=("the Nexmark check against Apache Flink (scripts/nexmark-flink-check.sh): apt-get install openjdk-17-jre-headless")
fi

if [ ${#skipped[@]} -gt 0 ]; then
  echo "== skipped, for want of what could not be installed:" >&2
  printf '   %s\n' "${skipped[@]}" >&2
  exit 1
fi
echo "== all tests passed"
