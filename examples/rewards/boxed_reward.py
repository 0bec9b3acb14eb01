#!/usr/bin/env python3
"""An rlvr reward program (the `command` verifier): exact match of the last \\boxed{} answer.

rlvr starts it once and keeps it running. Each line on stdin is one batch, a JSON array of
{"prompt", "response", "ground_truth", "data_source", "extra": {"id"}}; the program answers one
line on stdout: a JSON array with one {"score", "outcome", "info"} per item, in order (a bare
number per item is enough). Anything written to stderr shows up in rlvr's error messages and in
its log at -v. Use it from a run config:

    [reward]
    default = { type = "command", cmd = ["python3", "examples/rewards/boxed_reward.py"] }

Replace `score` with your own logic; keep the loop as it is.
"""

import json
import sys


def last_boxed(text: str):
    """The content of the last \\boxed{...} (balanced braces), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def normalize(answer: str) -> str:
    return "".join(answer.split()).replace("\\dfrac", "\\frac").rstrip(".")


def score(item: dict) -> dict:
    answer = last_boxed(item["response"])
    if answer is None:
        return {"score": 0.0, "outcome": "no-answer"}
    correct = normalize(answer) == normalize(item["ground_truth"])
    return {
        "score": 1.0 if correct else 0.0,
        "outcome": "correct" if correct else "incorrect",
        "info": {"answer": answer},
    }


def main() -> None:
    for line in sys.stdin:
        batch = json.loads(line)
        print(json.dumps([score(item) for item in batch]), flush=True)


if __name__ == "__main__":
    main()
