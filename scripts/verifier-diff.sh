#!/usr/bin/env bash
# Differential testing of rlvr's math verifier against Math-Verify (development only; rlvr never
# depends on Python at run time). Makes a venv in <repo>/.tools/verifier-venv with the pinned
# Math-Verify, then:
#
#   scripts/verifier-diff.sh corpus [SEED] [OUT]   generate + label the corpus (default: seed 0,
#                                                  crates/rewards/tests/data/verifier_diff.json;
#                                                  RLVR_CORPUS_DELIBERATE=1 adds the classes where
#                                                  rlvr deliberately differs, to measure them)
#   scripts/verifier-diff.sh bench [CORPUS]        answers/s on one core: Math-Verify and rlvr on
#                                                  the same corpus, and their ratio
#   scripts/verifier-diff.sh test [CORPUS]         the agreement test on a corpus (e.g. a fresh
#                                                  seed written elsewhere: a held-out check)
#
# MATH train answers come from $RLVR_MATH_TRAIN (default: the copy in crates/rewards/tests/data).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/verifier-venv"
math_verify_version="0.9.0"
default_corpus="$root/crates/rewards/tests/data/verifier_diff.json"

# shellcheck source=scripts/bootstrap-common.sh
source "$root/scripts/bootstrap-common.sh"

ensure_venv() {
  if [[ -x "$venv/bin/python" ]] \
    && "$venv/bin/python" -c "import math_verify, pyarrow" 2>/dev/null \
    && [[ "$("$venv/bin/python" -c "from importlib.metadata import version; print(version('math-verify'))")" == "$math_verify_version" ]]; then
    return
  fi
  local python
  python="$(find_python verifier-diff "math-verify $math_verify_version")"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet "math-verify==$math_verify_version" pyarrow
}

cmd="${1:-}"
case "$cmd" in
  corpus)
    ensure_venv
    data="${RLVR_MATH_TRAIN:-$root/crates/rewards/tests/data/math_train.parquet}"
    [[ -f "$data" ]] || { echo "verifier-diff: no MATH train parquet at $data (set RLVR_MATH_TRAIN)" >&2; exit 1; }
    "$venv/bin/python" "$root/scripts/verifier-diff/corpus.py" --data "$data" \
      --seed "${2:-0}" --out "${3:-$default_corpus}" ${RLVR_CORPUS_DELIBERATE:+--deliberate}
    ;;
  bench)
    ensure_venv
    corpus="$(realpath "${2:-$default_corpus}")"
    # Both run pinned to one core where taskset exists; Math-Verify for at most 120 s (a prefix
    # of the corpus when it is slower than that).
    one_core=()
    if command -v taskset >/dev/null; then one_core=(taskset -c 0); fi
    (cd "$root" && cargo bench -q -p rlvr-rewards --bench verifier_throughput --no-run)
    mv_rate="$("${one_core[@]}" "$venv/bin/python" "$root/scripts/verifier-diff/throughput.py" "$corpus" 120)"
    rlvr_rate="$(cd "$root" && RLVR_VERIFIER_CORPUS="$corpus" \
      "${one_core[@]}" cargo bench -q -p rlvr-rewards --bench verifier_throughput \
      | sed -n 's/^rlvr answers\/s: //p')"
    echo "Math-Verify answers/s (one core): $mv_rate"
    echo "rlvr answers/s (one core):        $rlvr_rate"
    python3 -c "print(f'ratio rlvr / Math-Verify: {float($rlvr_rate) / float($mv_rate):.0f}x')"
    ;;
  test)
    corpus="$(realpath "${2:-$default_corpus}")"
    cd "$root" && RLVR_VERIFIER_CORPUS="$corpus" \
      cargo test -p rlvr-rewards --test verifier_diff -- --nocapture
    ;;
  *)
    echo "usage: scripts/verifier-diff.sh corpus [SEED] [OUT] | bench [CORPUS] | test [CORPUS]" >&2
    exit 2
    ;;
esac
