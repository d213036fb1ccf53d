"""How much forgetting an attack undoes: FE before and after, and the recovery, with intervals
(docs/method.md, section 9).

    entry = robustness(before, after, baseline)   # three lists of forget records, same questions in order

``before``: the unlearned model on the scored questions; ``after``: the attacked model on
them; ``baseline``: the target under the attack's baseline condition. The forgetting is what
separates a model from the target, FE(model) - FE(baseline), and

    recovery = (FE_before - FE_after) / (FE_before - FE_baseline)

is the share of it the attack undoes: 0 = none, 1 = all (back to the target), above 1 = past
it. It is undefined (None) when the model did not clearly forget under the attack's
condition: FE_before <= FE_baseline, or, with intervals, when the interval of the forgetting
FE_before - FE_baseline reaches 0 (a ratio over a difference within noise means nothing: a
forgetting of 0.02 would turn a change of 0.1 into a recovery of -5). Intervals: a seeded
percentile bootstrap over the questions, the same draw for the three record lists.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from unlearnlm.evaluation.aggregates import FE_METRICS
from unlearnlm.evaluation.intervals import LEVEL, RESAMPLES, percentile_bounds

Records = Sequence[Mapping]


def _fe_columns(records: Records) -> np.ndarray:
    """(examples,) per-question mean of the FE metrics, so that 1 - its mean is the set's FE."""
    return np.asarray([[float(r[m]) for m in FE_METRICS] for r in records], dtype=np.float64).mean(axis=1)


def _recovery(before: float, after: float, baseline: float) -> float | None:
    forgotten = before - baseline
    return None if forgotten <= 0 else (before - after) / forgotten


def _check_aligned(before: Records, after: Records, baseline: Records) -> None:
    refs = [[r.get("reference") for r in rs] for rs in (before, after, baseline)]
    if not (refs[0] == refs[1] == refs[2]):
        raise ValueError("robustness: the three record lists must score the same answers in the same order")


def robustness(before: Records, after: Records, baseline: Records, resamples: int = RESAMPLES,
               seed: int = 0, level: float = LEVEL) -> dict:
    """{"n", "fe_before", "fe_after", "fe_baseline", "change" (after - before), "forgotten"
    (before - baseline), "recovery", "intervals": {"fe_after", "change", "forgotten", "recovery"}}."""
    _check_aligned(before, after, baseline)
    cols = [_fe_columns(rs) for rs in (before, after, baseline)]
    fe_b, fe_a, fe_r = (1.0 - float(c.mean()) for c in cols)
    out = {"n": len(before), "fe_before": fe_b, "fe_after": fe_a, "fe_baseline": fe_r, "change": fe_a - fe_b,
           "forgotten": fe_b - fe_r, "recovery": _recovery(fe_b, fe_a, fe_r), "intervals": {}}
    if resamples and len(before):
        draws = np.random.default_rng(seed).integers(0, len(before), size=(resamples, len(before)))
        b, a, r = (1.0 - c[draws].mean(axis=1) for c in cols)
        out["intervals"] = {
            "fe_after": percentile_bounds(a.tolist(), level),
            "change": percentile_bounds((a - b).tolist(), level),
            "forgotten": percentile_bounds((b - r).tolist(), level),
            "recovery": percentile_bounds([_recovery(x, y, z) for x, y, z in zip(b, a, r)], level),
        }
        if out["intervals"]["forgotten"][0] <= 0:  # no clear forgetting: no recovery to speak of
            out["recovery"] = out["intervals"]["recovery"] = None
    return out
