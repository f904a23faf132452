#!/usr/bin/env bash
# Chaos run for the benchmark report: a checkpointed, windowed word count over a file of
# 3 M lines is killed with SIGKILL at random moments KILLS times (default 100), restarted on
# 1, 2 or 3 workers in turn, and finally run to its end; its committed output must equal an
# uninterrupted run's. Usage: scripts/chaos.sh [KILLS]
set -euo pipefail
KILLS=${1:-100}
cd "$(dirname "$0")/.."
cargo build --release -q -p riffle-cli
R=$PWD/target/release/riffle
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$R" generate words --lines 3000000 --words-per-line 3 --vocabulary 500 --step 1 --disorder 300 > "$WORK/words.txt"
JOB=(wordcount --time event --window 5s --slide 1s --out-of-orderness 500ms --format json --source "file://$WORK/words.txt")
"$R" "${JOB[@]}" -w 2 2>/dev/null | sort > "$WORK/expected.txt"
kills=0
runs=0
SECONDS=0
while [ "$kills" -lt "$KILLS" ]; do
  workers=$((1 + runs % 3)); runs=$((runs + 1))
  "$R" "${JOB[@]}" -w "$workers" --checkpoint-dir "$WORK/ck" --checkpoint-interval 20ms --sink "file://$WORK/out" 2>/dev/null &
  pid=$!
  sleep "0.0$((RANDOM % 8 + 2))"
  if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
  wait "$pid" 2>/dev/null || true
  if [ "$runs" -gt $((KILLS * 3)) ]; then echo "the job keeps finishing before it is killed: give it more input"; exit 1; fi
done
"$R" "${JOB[@]}" -w 2 --checkpoint-dir "$WORK/ck" --checkpoint-interval 20ms --sink "file://$WORK/out" 2>/dev/null
cat "$WORK"/out/part-* | sort > "$WORK/got.txt"

if cmp -s "$WORK/got.txt" "$WORK/expected.txt"; then
  echo "chaos: $kills kills in $runs runs, $(wc -l < "$WORK/got.txt") results, identical to the uninterrupted run in ${SECONDS} s"
else
  echo "chaos: OUTPUT DIFFERS after $kills kills: $(wc -l < "$WORK/got.txt") results, expected $(wc -l < "$WORK/expected.txt")"
  exit 1
fi
