#!/usr/bin/env bash
# Nexmark on Apache Flink and on riffle, same events, same run: prints riffle/Flink ratios.
#
#   bash bench/nexmark-flink.sh [EVENTS] [PARALLELISM] [QUERIES]
#
# Installs what it needs: PyFlink (PyPI apache-flink, into target/flink-venv; needs Java 17 on
# the PATH) and a release build of riffle. Generates EVENTS (default 2000000) Nexmark events
# into target/nexmark/events.jsonl with riffle (nexmark-flink's configuration), then runs each
# query on both (see bench/nexmark_flink.py for what is timed).
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${1:-2000000}
PARALLELISM=${2:-1}
QUERIES=${3:-q0,q1,q2,q3,q4,q5,q7,q8,q11}
source bench/pyflink-env.sh
echo "== building riffle" >&2
cargo build -q --release -p riffle-cli
mkdir -p target/nexmark
EVENTS_FILE=target/nexmark/events-$EVENTS.jsonl
if [ ! -s "$EVENTS_FILE" ]; then
  target/release/riffle nexmark generate --events "$EVENTS" > "$EVENTS_FILE.tmp"
  mv "$EVENTS_FILE.tmp" "$EVENTS_FILE"
fi
echo "== $("$VENV/bin/python" -c 'import pyflink.version as v; print("Flink", v.__version__)'), $(java -version 2>&1 | head -1)" >&2
exec "$VENV/bin/python" bench/nexmark_flink.py --events-file "$EVENTS_FILE" --events "$EVENTS" \
  --queries "$QUERIES" --parallelism "$PARALLELISM" --riffle target/release/riffle
