"""The reward of the whole-step GRPO benchmark (scripts/bench-grpo.sh), in verl's
compute_score form for rlvr's `python-function` verifier: 1 when the response has a digit."""


def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    return 1.0 if any(c.isdigit() for c in solution_str) else 0.0
