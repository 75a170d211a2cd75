#!/usr/bin/env bash
# Reads Atelier.Loader.Bench's output on stdin and prints one line per training run: the time the
# trainer waited for data as a share of its step time, against the goal (under 5%).
set -euo pipefail
grep '^RESULT wait ' | while read -r _ _ trainer latency loader step first waited pct waits; do
  t=${trainer#trainer=}; l=${latency#latency_ms=}; o=${loader#loader=}; s=${step#step_ms=}
  f=${first#first_ms=}; w=${waited#waited_ms=}; p=${pct#waited_pct=}
  verdict=$(awk -v p="$p" 'BEGIN{print (p < 5) ? "met" : "NOT met"}')
  printf 'loader wait, %s step %s ms, %s ms per remote read, loader %s: waited %s ms = %s%% of step time (goal < 5%%: %s; first batch %s ms start-up)\n' \
    "$t" "$s" "$l" "$o" "$w" "$p" "$verdict" "$f"
done
