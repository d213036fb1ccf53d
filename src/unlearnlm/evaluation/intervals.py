"""Bootstrap confidence intervals of set means and aggregates, and of paired differences (docs/method.md, section 7).

    records = {"forget": [...], "retain": [...], ...}      # per-example records of one model
    ci = intervals(records, "tofu")                        # {"sets": {set: {metric: (lo, hi)}}, "aggregates": {...}}
    diff = paired_differences(records_a, records_b, "tofu")  # {aggregate: (A - B, lo, hi)}
    diff = paired_differences([a_seed0, a_seed1], [b_seed0, b_seed1], "tofu")  # seed-averaged A - B

Questions are resampled with replacement within each set (forget and holdout too, for the
membership-inference AUCs) (one draw of indices per set and
resample, shared by every metric of that set, so their correlation is kept); each resample's
set means give every aggregate, and the 2.5th and 97.5th percentiles of the resampled values
are the 95% interval (percentile bootstrap). A paired interval draws the same questions for
both models. Seeded: the same records give the same intervals.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from unlearnlm.evaluation.aggregates import aggregate, mia_aucs, retain_relative
from unlearnlm.evaluation.registry import METRICS

RESAMPLES = 1000
LEVEL = 0.95
Records = Mapping[str, Sequence[Mapping[str, Any]]]


def _columns(records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """{metric: per-example values} for every registered metric present in every record."""
    out = {}
    for name in METRICS.names():
        values = [r.get(name) for r in records]
        if values and all(v is not None for v in values):
            out[name] = np.asarray(values, dtype=np.float64)
    return out


def _draws(n_by_set: Mapping[str, int], resamples: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.integers(0, n, size=(resamples, n)) for name, n in n_by_set.items() if n}


def percentile_bounds(values: Sequence[float | None], level: float) -> tuple[float, float] | None:
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if finite.size < len(values) or finite.size == 0:
        return None  # an aggregate undefined in some resample has no interval
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return float(lo), float(hi)


def _resampled_means(columns: Mapping[str, Mapping[str, np.ndarray]], draws: Mapping[str, np.ndarray]):
    """{set: {metric: (resamples,) means}}."""
    return {s: {m: v[draws[s]].mean(axis=1) for m, v in cols.items()} for s, cols in columns.items() if s in draws}


def _aggregates_per_resample(means: Mapping[str, Mapping[str, np.ndarray]], family: str, resamples: int) -> dict:
    """{aggregate: [value of each resample]}."""
    out: dict[str, list] = {}
    for r in range(resamples):
        for key, value in aggregate({s: {m: float(v[r]) for m, v in ms.items()} for s, ms in means.items()},
                                    family).items():
            out.setdefault(key, []).append(value)
    return out


def _aucs_per_resample(records: Records, draws: Mapping[str, np.ndarray], resamples: int) -> dict[str, list]:
    """{"auc_<attack>": [AUC of each resample]} of the membership-inference attacks, from the
    same draws of the forget and holdout sets as the means ({} without both sets)."""
    if not (records.get("forget") and records.get("holdout")):
        return {}
    forget, holdout = list(records["forget"]), list(records["holdout"])
    per: dict[str, list] = {}
    for r in range(resamples):
        aucs = mia_aucs([forget[i] for i in draws["forget"][r]], [holdout[i] for i in draws["holdout"][r]])
        for key, value in aucs.items():
            per.setdefault(key, []).append(value)
    return per


def intervals(records: Records, family: str, resamples: int = RESAMPLES, seed: int = 0,
              level: float = LEVEL) -> dict[str, dict]:
    """95% intervals of every set mean and every aggregate of one model's records."""
    columns = {s: _columns(rs) for s, rs in records.items()}
    draws = _draws({s: len(rs) for s, rs in records.items()}, resamples, seed)
    means = _resampled_means(columns, draws)
    per_resample = _aggregates_per_resample(means, family, resamples) | _aucs_per_resample(records, draws, resamples)
    return {
        "sets": {s: {m: percentile_bounds(v.tolist(), level) for m, v in ms.items()} for s, ms in means.items()},
        "aggregates": {k: percentile_bounds(v, level) for k, v in per_resample.items()},
        "resamples": resamples, "seed": seed, "level": level,
    }


def _keyed(records: list[dict]) -> dict[tuple[str, int], dict]:
    """Records keyed by (question, how many times it came before): a repeated question pairs
    its first occurrence with the other model's first, its second with the second."""
    seen: dict[str, int] = {}
    out = {}
    for r in records:
        k = seen[r["question"]] = seen.get(r["question"], -1) + 1
        out[(r["question"], k)] = r
    return out


def _shared_questions(*models: Records) -> list[dict]:
    """Every model's records restricted to the questions of each set that all of them hold, in
    the first model's order (a pairing by question)."""
    sets = [s for s in models[0] if all(s in m for m in models)]
    by_q = [{s: _keyed(m[s]) for s in sets} for m in models]
    out: list[dict] = [{} for _ in models]
    for s in sets:
        shared = [key for key in by_q[0][s] if all(key in q[s] for q in by_q)]
        for i, q in enumerate(by_q):
            out[i][s] = [q[s][key] for key in shared]
    return out


def _aucs(records: Records) -> dict[str, float]:
    return mia_aucs(records["forget"], records["holdout"]) if records.get("forget") and records.get("holdout") else {}


def _point(columns: Mapping[str, Mapping[str, np.ndarray]], family: str) -> dict:
    return aggregate({s: {m: float(v.mean()) for m, v in c.items()} for s, c in columns.items()}, family)


def paired_differences(records_a: Records | Sequence[Records], records_b: Records | Sequence[Records],
                       family: str, resamples: int = RESAMPLES, seed: int = 0,
                       level: float = LEVEL) -> dict[str, tuple[float, float, float] | None]:
    """{aggregate: (A - B, lo, hi)} with the same questions drawn for both models in every resample;
    the membership-inference AUCs too when every model has forget and holdout records.

    Either side may be a list of models (one method under several seeds): A - B is then the
    difference of the seed-averaged aggregates, mean over A's models minus mean over B's, and
    the same questions are drawn for every model of both sides, so the interval is the
    question-sampling uncertainty of that difference (the seeds' own spread is reported beside it)."""
    side_a = [records_a] if isinstance(records_a, Mapping) else list(records_a)
    side_b = [records_b] if isinstance(records_b, Mapping) else list(records_b)
    models = _shared_questions(*side_a, *side_b)
    columns = [{s: _columns(rs) for s, rs in m.items()} for m in models]
    draws = _draws({s: len(rs) for s, rs in models[0].items()}, resamples, seed)
    per = [_aggregates_per_resample(_resampled_means(c, draws), family, resamples)
           | _aucs_per_resample(m, draws, resamples) for c, m in zip(columns, models)]
    points = [_point(c, family) | _aucs(m) for c, m in zip(columns, models)]
    n_a = len(side_a)
    out: dict[str, tuple[float, float, float] | None] = {}
    for key in per[0]:
        if any(p.get(key) is None for p in points) or any(key not in p for p in per):
            out[key] = None
            continue
        diffs = [_side_difference([p[key][r] for p in per], n_a) for r in range(resamples)]
        bounds = percentile_bounds(diffs, level)
        out[key] = None if bounds is None else (_side_difference([p[key] for p in points], n_a), *bounds)
    return out


def _side_difference(values: Sequence[float | None], n_a: int) -> float | None:
    """mean(values[:n_a]) - mean(values[n_a:]); None when any value is undefined."""
    if any(v is None for v in values):
        return None
    return float(np.mean(values[:n_a]) - np.mean(values[n_a:]))


def retain_relative_intervals(model: Records, retain: Records, resamples: int = RESAMPLES, seed: int = 0,
                              level: float = LEVEL) -> dict[str, tuple[float, float] | None]:
    """95% intervals of the aggregates that compare a model with the retain model: privleak and
    the Reference attack's AUC. Both models' forget and holdout records are matched by question
    and the same questions drawn for both in every resample. Forget Quality gets none: it is a
    KS-test p-value, a test's outcome rather than an estimate (docs/method.md, section 7)."""
    sets = [s for s in ("forget", "holdout") if model.get(s) and retain.get(s)]
    if len(sets) < 2:
        return {}
    mine, theirs = _shared_questions({s: model[s] for s in sets}, {s: retain[s] for s in sets})
    draws = _draws({s: len(rs) for s, rs in mine.items()}, resamples, seed)
    per: dict[str, list] = {}
    for r in range(resamples):
        a = {s: [mine[s][i] for i in draws[s][r]] for s in mine}
        b = {s: [theirs[s][i] for i in draws[s][r]] for s in theirs}
        for key, value in retain_relative(a, b).items():
            per.setdefault(key, []).append(value)
    return {k: percentile_bounds(v, level) if len(v) == resamples else None for k, v in per.items()}
