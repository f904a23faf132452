#!/usr/bin/env bash
# Chaos run for the benchmark report: a checkpointed, windowed word count over a file of
# 3 M lines is killed with SIGKILL at random moments until KILLS kills have landed (default
# 100), restarted on 1, 2 or 3 workers in turn. Whenever a run ends by itself, its committed
# output must equal an uninterrupted run's, and a new round starts from scratch.
# Usage: scripts/chaos.sh [KILLS]
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
rounds=0
SECONDS=0
check() {
  cat "$WORK"/out/part-* | sort > "$WORK/got.txt"
  if ! cmp -s "$WORK/got.txt" "$WORK/expected.txt"; then
    echo "chaos: OUTPUT DIFFERS in round $rounds after $kills kills: $(wc -l < "$WORK/got.txt") results, expected $(wc -l < "$WORK/expected.txt")"
    exit 1
  fi
}
while [ "$kills" -lt "$KILLS" ]; do
  rounds=$((rounds + 1))
  rm -rf "$WORK/ck" "$WORK/out"
  while [ "$kills" -lt "$KILLS" ]; do
    workers=$((1 + runs % 3))
    runs=$((runs + 1))
    "$R" "${JOB[@]}" -w "$workers" --checkpoint-dir "$WORK/ck" --checkpoint-interval 20ms --sink "file://$WORK/out" 2>/dev/null &
    pid=$!
    sleep "0.0$((RANDOM % 8 + 2))"
    if kill -9 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
      kills=$((kills + 1))
    else
      wait "$pid" || { echo "chaos: a run failed"; exit 1; }
      break
    fi
  done
  "$R" "${JOB[@]}" -w 2 --checkpoint-dir "$WORK/ck" --checkpoint-interval 20ms --sink "file://$WORK/out" 2>/dev/null
  check
done
echo "chaos: $kills kills in $runs runs over $rounds rounds; every round's committed output ($(wc -l < "$WORK/expected.txt") results) identical to the uninterrupted run; ${SECONDS} s"
