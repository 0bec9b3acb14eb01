"""A reward file written for verl (`custom_reward_function.path`), used unchanged by rlvr's
`python-function` verifier: rlvr calls compute_score(data_source=, solution_str=, ground_truth=,
extra_info=) for every response, as verl's reward managers do.

It reads the row's `extra_info` (from the dataset's `extra_info` column) to choose how the answer
is written, and returns a dict: "score" plus details rlvr keeps as the item's info.
"""
import re


def last_boxed(text):
    """The content of the last \\boxed{...}, braces balanced; None if there is none."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed{") - 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j]
    return None


def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    # verl rows carry per-row data here; this file needs it (a KeyError would say it is missing).
    fmt = extra_info["answer_format"]
    if fmt == "boxed":
        answer = last_boxed(solution_str)
    else:
        numbers = re.findall(r"-?\d+(?:\.\d+)?", solution_str)
        answer = numbers[-1] if numbers else None
    correct = answer is not None and answer.strip() == ground_truth.strip()
    return {"score": 1.0 if correct else 0.0, "row": extra_info["index"], "extracted": answer}
