"""Options that no longer exist: what replaced them, and old saved configs rewritten to match.

    RETIRED["eval.mmlu_size"]        # the one-line pointer shown when a user passes it
    migrate_retired(old_config_dict) # eval.mmlu_size N -> eval.lm_eval_tasks [mmlu_offline], limit N
"""
from __future__ import annotations

import copy

RETIRED = {"eval.mmlu_size": "replaced by lm-evaluation-harness: eval.lm_eval_tasks=[mmlu_offline] eval.lm_eval_limit=N"}


def migrate_retired(cfg_dict: dict) -> dict:
    """A saved config with its retired options written as their replacements (eval.mmlu_size N
    becomes lm_eval_tasks [mmlu_offline] with limit N), so an older run directory compares."""
    out = copy.deepcopy(cfg_dict)
    size = (out.get("eval") or {}).pop("mmlu_size", None)
    if size:
        out["eval"].update(lm_eval_tasks=["mmlu_offline"], lm_eval_limit=size)
    return out
