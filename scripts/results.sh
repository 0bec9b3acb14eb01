#!/usr/bin/env bash
# Regenerates docs/results.md and its figures (docs/results/*.png, *.svg) from
# docs/sweeps/results.toml: 5 algorithms × 3 seeds on the built-in countdown task, pass@K up to
# K = 64. Finished runs in runs/sweeps/results are reused; delete that folder for a fresh run.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/rlvr.sh sweep docs/sweeps/results.toml --report docs/results.md "$@"
