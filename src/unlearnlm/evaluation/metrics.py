"""The paper's six output metrics, per example (docs/method.md, section 7).

    from unlearnlm.evaluation.metrics import rouge_l_recall
    rouge_l_recall("he runs", "he was running fast")   # -> 0.5

Pure functions of numbers and strings: no model code. They are registered, with what they
need and which aggregates they enter, in ``evaluation/registry.py``.
"""
from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache
from typing import Sequence

import numpy as np
from scipy.special import logsumexp


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
