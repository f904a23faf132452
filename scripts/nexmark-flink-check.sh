#!/usr/bin/env bash
# Every Nexmark query run by riffle equals the same query's SQL run by Apache Flink over the same
# events (Flink's changelog applied; riffle on 2 workers, Flink with parallelism 2): the
# reference engine as an oracle, beside the batch computation the Rust tests use. Installs
# PyFlink (PyPI apache-flink, ~1 minute, into target/flink-venv) when missing; needs Java 17.
#
#   bash scripts/nexmark-flink-check.sh [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${1:-10000}
source bench/pyflink-env.sh
cargo build -q --release -p riffle-cli
mkdir -p target/nexmark
# 250 events per second of event time: 40 s, over many windows and sessions.
FILE=target/nexmark/check-$EVENTS.jsonl
target/release/riffle nexmark generate --events "$EVENTS" --rate 250 > "$FILE"
for workers in 2; do
  echo "== riffle on $workers worker(s) against Flink (parallelism $workers)"
  "$VENV/bin/python" -u bench/nexmark_flink.py --check --events-file "$FILE" --events "$EVENTS" \
    --parallelism "$workers" --riffle target/release/riffle
done
