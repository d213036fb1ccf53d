"""Per-example metric functions and the evaluation-set table (docs/method.md, section 7).

    from unlearnlm.evaluation.metrics import METRICS, eval_set, rouge_l_recall
    rouge_l_recall("he runs", "he was running fast")   # -> 0.5
    eval_set("real_authors", "tofu").truth_key            # -> "answer"
    [e.name for e in METRICS]                              # the six set-level metrics

Pure functions of numbers and strings: no model code. The set score of a metric is the
mean of its per-example scores (see ``aggregates.set_means``).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Sequence

import numpy as np
from scipy.special import logsumexp

from unlearnlm.errors import ConfigError
from unlearnlm.registry import Registry

Side = Literal["generation", "reference"]


# ---------------------------------------------------------------- per-example metrics
@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_recall(generation: str, reference: str) -> float:
    """ROUGE-L recall: LCS(generation, reference) / len(reference), Porter-stemmed tokens."""
    return float(_rouge_scorer().score(reference, generation)["rougeL"].recall)


def probability(nll_mean_answer: float) -> float:
    """exp(-NLL_mean(answer)): the per-token geometric-mean probability of the answer."""
    return math.exp(-nll_mean_answer)


def _perturbed(nll_mean_perturbed: Sequence[float]) -> np.ndarray:
    values = np.asarray(nll_mean_perturbed, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("need at least one perturbed answer NLL, got none")
    return values


def normalized_probability(nll_mean_answer: float, nll_mean_perturbed: Sequence[float]) -> float:
    """p / (p + sum_j p_j), each p = exp(-NLL_mean), computed as exp(log p - logsumexp)."""
    logps = np.concatenate([[-float(nll_mean_answer)], -_perturbed(nll_mean_perturbed)])
    return float(np.exp(logps[0] - logsumexp(logps)))


def truth_ratio_raw(nll_mean_base: float, nll_mean_perturbed: Sequence[float]) -> float:
    """R = exp(mean_j NLL_mean(perturbed_j) - NLL_mean(base)); may be 0 or inf at extremes."""
    with np.errstate(over="ignore", under="ignore"):
        return float(np.exp(_perturbed(nll_mean_perturbed).mean() - float(nll_mean_base)))


def truth_ratio_score(R: float, forget: bool) -> float:
    """Forget set: 1 - min(R, 1/R). Other sets: max(0, 1 - 1/R). The set score is the mean."""
    if math.isnan(R) or R < 0:
        raise ValueError(f"truth ratio must be a number >= 0, got {R}")
    inv = math.inf if R == 0 else 1.0 / R
    return 1.0 - min(R, inv) if forget else max(0.0, 1.0 - inv)


def token_entropy(token_ids: Sequence[int]) -> float:
    """Unigram entropy (bits) of the tokens over log2(n); 0 when n <= 1. In [0, 1]."""
    n = len(token_ids)
    if n <= 1:
        return 0.0
    h = -sum((c / n) * math.log2(c / n) for c in Counter(token_ids).values())
    return max(0.0, h / math.log2(n))


def cosine_score(a: np.ndarray, b: np.ndarray) -> float:
    """max(0, cos(a, b)); 0 when either vector is zero."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 0.0
    return float(min(1.0, max(0.0, np.dot(a, b) / (na * nb))))


ENTAILMENT_MIN_ROUGE = 0.1  # paper: an example with ROUGE-L recall < 0.1 scores 0


def entailment_score(is_entailment: bool, rouge: float) -> float:
    """1.0 if the NLI label is entailment and ROUGE-L recall >= 0.1, else 0.0."""
    return 1.0 if is_entailment and rouge >= ENTAILMENT_MIN_ROUGE else 0.0


# ---------------------------------------------------------------- set-level metrics
@dataclass(frozen=True)
class MetricSpec:
    """What a set-level metric needs computed per example, and its direction."""

    needs: frozenset[str]  # subset of {"generation", "likelihood", "embedding", "nli"}
    higher_is_better: bool  # on non-forget sets; on the forget set lower means forgotten


METRICS: Registry[MetricSpec] = Registry("metric")
for _name, _needs, _doc in (
    ("rouge", {"generation"}, "ROUGE-L recall of the greedy generation against the ground truth"),
    ("probability", {"likelihood"}, "exp(-mean NLL) of the answer (normalized on real authors/world facts)"),
    ("truth_ratio", {"likelihood"}, "perturbed vs base answer likelihood ratio (forget / non-forget form)"),
    ("token_entropy", {"generation"}, "unigram entropy of the generation's tokens over log2(n)"),
    ("cosine_similarity", {"generation", "embedding"}, "max(0, cosine) of generation and reference embeddings"),
    ("entailment", {"generation", "nli"}, "1 if the NLI label is entailment and ROUGE-L >= 0.1"),
):
    METRICS.add(_name, MetricSpec(frozenset(_needs), True), _doc)


# ---------------------------------------------------------------- evaluation sets
@dataclass(frozen=True)
class EvalSet:
    """Which fields of a data row each metric uses on one evaluation set."""

    is_forget: bool
    truth_key: str  # ground truth for ROUGE and entailment
    truth_ratio_base_key: str  # base answer of the truth ratio
    cosine_key: str  # reference for cosine similarity
    probability_form: Literal["plain", "normalized"]
    nli_premise: Side  # the other side is the hypothesis
    # The ground truth is a short answer ("William Shakespeare"): the NLI judge sees it after
    # its question (a bare name entails no sentence). Beyond method.md; see README, Judges.
    nli_with_question: bool = False


_G, _R = "generation", "reference"
# One table: data family ("tofu" or "real_world") -> set name -> fields.
# Real-world "answer" is the original model's own output, hence the cosine reference.
EVAL_SETS: dict[str, dict[str, EvalSet]] = {
    "tofu": {
        "forget": EvalSet(True, "answer", "paraphrased_answer", "answer", "plain", _G),
        "retain": EvalSet(False, "answer", "paraphrased_answer", "answer", "plain", _R),
        "real_authors": EvalSet(False, "answer", "answer", "original_answer", "normalized", _R, True),
        "world_facts": EvalSet(False, "answer", "answer", "original_answer", "normalized", _R, True),
    },
    "real_world": {
        "forget": EvalSet(True, "golden_answer", "paraphrased_answer", "answer", "plain", _G),
        "neighbor": EvalSet(False, "golden_answer", "paraphrased_answer", "answer", "plain", _G),
    },
}


def eval_set(set_name: str, scenario: str) -> EvalSet:
    """The table row for ``set_name`` in data family ``scenario`` ("tofu" or "real_world";
    continual runs pass the family of their forget file)."""
    if scenario not in EVAL_SETS:
        raise ConfigError(
            f"unknown evaluation scenario {scenario!r}; valid: {', '.join(EVAL_SETS)}"
        )
    sets = EVAL_SETS[scenario]
    if set_name not in sets:
        raise ConfigError(
            f"unknown {scenario} evaluation set {set_name!r}; valid: {', '.join(sets)}"
        )
    return sets[set_name]


def is_forget_set(set_name: str) -> bool:
    """Whether ``set_name`` is a forget set (the same in every family)."""
    for sets in EVAL_SETS.values():
        if set_name in sets:
            return sets[set_name].is_forget
    names = sorted({n for sets in EVAL_SETS.values() for n in sets})
    raise ConfigError(f"unknown evaluation set {set_name!r}; valid: {', '.join(names)}")


def entailment_direction(set_name: str, scenario: str) -> tuple[Side, Side]:
    """(premise, hypothesis) for the NLI classifier on this set."""
    premise = eval_set(set_name, scenario).nli_premise
    return (premise, _R if premise == _G else _G)
