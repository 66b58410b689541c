#!/usr/bin/env bash
# Run the PR-path benchmarks of two sluice builds side by side, in one session, so that a
# refactor can be judged against the same machine and load (issue 9: "every benchmark figure
# within 10%, before and after, in one run").
#
# Usage: scripts/bench-compare.sh BEFORE_BINARY AFTER_BINARY [OUT_DIR]
#   RUNS=N   timed runs per measurement (default 9)
#
# Each benchmark runs before, then after, then before and after again, interleaved, so that
# a change of load during the session hits both sides alike. The JSON of every run is kept in
# OUT_DIR (default: a temporary folder, printed at the end) for the figures in a closing note.
set -euo pipefail

BEFORE="${1:?usage: bench-compare.sh BEFORE AFTER [OUT_DIR]}"
AFTER="${2:?usage: bench-compare.sh BEFORE AFTER [OUT_DIR]}"
OUT="${3:-$(mktemp -d)}"
RUNS="${RUNS:-9}"
mkdir -p "$OUT"

benches=(
  "affected --runs $RUNS"
  "plan --runs $RUNS"
  "render --runs $RUNS"
  "policy --runs $RUNS"
  "check --runs $RUNS"
  "evidence --backend sqlite"
)

for round in 1 2; do
  for b in "${benches[@]}"; do
    name="${b%% *}"
    for side in before after; do
      bin="$BEFORE"; [[ $side == after ]] && bin="$AFTER"
      # shellcheck disable=SC2086 # the bench arguments are words on purpose
      "$bin" bench $b --format json >"$OUT/$name-$side-$round.json" 2>"$OUT/$name-$side-$round.err" ||
        echo "$name ($side, round $round) failed: see $OUT/$name-$side-$round.err" >&2
    done
  done
done
echo "$OUT"
