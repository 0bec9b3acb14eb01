"""Math-Verify's throughput on one core over a differential corpus: answers verified per second,
gold and prediction parsing included (the same work rlvr's verifier_throughput bench times).
Prints the rate alone on stdout."""

import json
import sys
import time

import math_verify


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    budget = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    start = time.perf_counter()
    done = 0
    for _category, gold, pred, _label in cases:
        math_verify.verify(math_verify.parse("\\boxed{" + gold + "}"), math_verify.parse(pred))
        done += 1
        if time.perf_counter() - start > budget:
            break
    rate = done / (time.perf_counter() - start)
    print(f"{done} pairs", file=sys.stderr)
    print(f"{rate:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
