"""Set means and the aggregate scores MU, MU Retain, FE, Forget Quality, TOFU MU, the
membership-inference AUCs and privleak (docs/method.md, section 7).

    from unlearnlm.evaluation.aggregates import aggregate, set_means
    sets = {name: set_means(per_example_rows) for name, per_example_rows in results.items()}
    aggregate(sets, "tofu")   # {"model_utility": ..., "mu_retain": ..., ...}
    mia_aucs(forget_records, holdout_records)   # {"auc_mia_min_k": ..., ...}

``sets`` maps an evaluation set name to {metric name: mean}. Metric names and the metrics each
aggregate reads are those of ``registry.METRICS``; set names those of ``sets.EVAL_SETS``.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from scipy.stats import ks_2samp

from unlearnlm.evaluation.privacy import auc, privleak
from unlearnlm.evaluation.registry import METRICS, entering
from unlearnlm.evaluation.sets import eval_set, set_kind

SetMeans = Mapping[str, Mapping[str, float]]

MU_METRICS = tuple(entering("MU"))
FE_METRICS = tuple(entering("FE"))
TOFU_MU_METRICS = tuple(entering("TOFU_MU"))
MIA_METRICS = tuple(entering("MIA"))
TOFU_MU_SETS = ("retain", "real_authors", "world_facts")
PRIVLEAK_ATTACK = "mia_min_k"  # privleak compares Min-K% AUCs


def metric_errors(names: list[str] | None) -> list[str]:
    """Problems of ``eval.metrics``, one line each (None: every metric whose inputs exist)."""
    if names is None:
        return []
    errors = [f"eval.metrics[{i}]: {METRICS.unknown_message(n)}" for i, n in enumerate(names) if n not in METRICS]
    if len(set(names)) < len(names):
        errors.append(f"eval.metrics: each metric once, got {names!r}")
    if not errors and not set(MU_METRICS) <= set(names):
        errors.append(f"eval.metrics: Model Utility and Forget Efficacy need the paper's six ({', '.join(MU_METRICS)})")
    return errors


def harmonic_mean(values: Iterable[float]) -> float:
    """n / sum(1/v); 0 if any value <= 0. Raises ValueError on NaN or no values."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("harmonic mean of no values")
    if any(math.isnan(v) for v in values):
        raise ValueError(f"harmonic mean of a NaN value: {values}")
    if any(v <= 0 for v in values):
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


def set_means(examples: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """{metric: mean over examples} for every registered metric with a non-None value.

    Other keys of the rows (question, generation...) are ignored."""
    means = {}
    for name in METRICS.names():
        vals = [float(row[name]) for row in examples if row.get(name) is not None]
        if vals:
            means[name] = sum(vals) / len(vals)
    return means


def _pick(sets: SetMeans, set_name: str, metrics: Iterable[str]) -> list[float]:
    if set_name not in sets:
        raise ValueError(f"no results for evaluation set {set_name!r}; have: {', '.join(sets)}")
    means = sets[set_name]
    missing = [m for m in metrics if m not in means]
    if missing:
        raise ValueError(f"set {set_name!r} lacks metric(s) {', '.join(missing)}")
    return [means[m] for m in metrics]


def _utility_sets(sets: SetMeans) -> list[str]:
    return [s for s in sets if set_kind(s) == "utility"]


def model_utility(sets: SetMeans) -> float:
    """Harmonic mean of the six metric means on every utility set present."""
    names = _utility_sets(sets)
    if not names:
        raise ValueError(f"no utility evaluation set among: {', '.join(sets) or 'none'}")
    return harmonic_mean(v for s in names for v in _pick(sets, s, MU_METRICS))


def mu_retain(sets: SetMeans) -> float:
    """Harmonic mean of the six metric means on "retain" ("neighbor" when no retain)."""
    name = "retain" if "retain" in sets else "neighbor"
    return harmonic_mean(_pick(sets, name, MU_METRICS))


def forget_efficacy(forget_means: Mapping[str, float]) -> float:
    """1 - mean(rouge, probability, truth_ratio, cosine_similarity, entailment) on forget."""
    vals = _pick({"forget": forget_means}, "forget", FE_METRICS)
    return 1.0 - sum(vals) / len(vals)


def forget_quality(
    truth_ratios_raw_unlearned: Sequence[float], truth_ratios_raw_retain_model: Sequence[float]
) -> float:
    """Two-sample KS test p-value between the raw per-example forget-set truth ratios R of
    the unlearned model and of a retain model (TOFU's Forget Quality)."""
    if len(truth_ratios_raw_unlearned) == 0 or len(truth_ratios_raw_retain_model) == 0:
        raise ValueError("forget quality needs truth ratios from both models")
    return float(ks_2samp(truth_ratios_raw_unlearned, truth_ratios_raw_retain_model).pvalue)


def tofu_model_utility(sets: SetMeans) -> float | None:
    """TOFU's MU: harmonic mean of probability, rouge, truth_ratio on retain, real_authors,
    world_facts (9 numbers); None if any of the three sets is missing."""
    if any(s not in sets for s in TOFU_MU_SETS):
        return None
    return harmonic_mean(v for s in TOFU_MU_SETS for v in _pick(sets, s, TOFU_MU_METRICS))


def _complete(sets: SetMeans, set_names: Iterable[str], metrics: Iterable[str]) -> bool:
    metrics = tuple(metrics)
    return all(s in sets and all(m in sets[s] for m in metrics) for s in set_names)


def aggregate(sets: SetMeans, family: str) -> dict[str, float | None]:
    """{"model_utility", "mu_retain", "forget_efficacy", "tofu_model_utility"}.

    ``family`` is the data family ("tofu" or "real_world"); every set name is checked
    against it. An aggregate whose sets or metrics are missing is None; NaN still raises."""
    for name in sets:
        eval_set(name, family)
    six = MU_METRICS
    kept = _utility_sets(sets)
    retain = "retain" if "retain" in sets else "neighbor"
    return {
        "model_utility": model_utility(sets) if kept and _complete(sets, kept, six) else None,
        "mu_retain": mu_retain(sets) if _complete(sets, [retain], six) else None,
        "forget_efficacy": (
            forget_efficacy(sets["forget"]) if _complete(sets, ["forget"], FE_METRICS) else None
        ),
        "tofu_model_utility": (
            tofu_model_utility(sets)
            if family == "tofu" and _complete(sets, TOFU_MU_SETS, TOFU_MU_METRICS)
            else None
        ),
    }


def _scores(records: Sequence[Mapping[str, Any]], name: str) -> list[float]:
    return [float(r[name]) for r in records if r.get(name) is not None]


def mia_aucs(forget: Sequence[Mapping[str, Any]], holdout: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """{"auc_<attack>": ROC AUC} of every membership-inference metric scored on both sets:
    forget = members, holdout = non-members; 1 = the forget set still looks trained-on."""
    out = {}
    for name in MIA_METRICS:
        members, others = _scores(forget, name), _scores(holdout, name)
        if members and others:
            out[f"auc_{name}"] = auc(members, others)
    return out


def retain_relative(model: Mapping[str, Sequence], retain: Mapping[str, Sequence]) -> dict[str, float | None]:
    """Privacy aggregates against the retain model, from both models' forget and holdout records
    ({"forget": records, "holdout": records}): privleak (Min-K% AUCs) and the Reference attack's
    AUC (score: the model's NLL_avg minus the retain model's, paired by question)."""
    if not all(model.get(s) and retain.get(s) for s in ("forget", "holdout")):
        return {}
    mine, theirs = mia_aucs(model["forget"], model["holdout"]), mia_aucs(retain["forget"], retain["holdout"])
    key = f"auc_{PRIVLEAK_ATTACK}"
    out: dict[str, float | None] = {}
    if key in mine and key in theirs:
        out["privleak"] = privleak(mine[key], theirs[key])
    diff = {}
    for s in ("forget", "holdout"):
        ref = {r["question"]: r.get("mia_loss") for r in retain[s]}
        diff[s] = [{"mia_reference": r["mia_loss"] - ref[r["question"]]} for r in model[s]
                   if r.get("mia_loss") is not None and ref.get(r["question"]) is not None]
    if diff["forget"] and diff["holdout"]:
        out["auc_mia_reference"] = auc(_scores(diff["forget"], "mia_reference"), _scores(diff["holdout"], "mia_reference"))
    return out
