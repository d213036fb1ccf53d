"""Membership inference and memorisation, per example and per pair of sets (docs/method.md, section 7).

    loss_score(logp)                     # NLL_avg: lower = more member-like
    min_k_score(logp, k=0.4)             # -mean of the lowest 40% token log-probs
    auc(member_scores, nonmember_scores) # 1: the forget set still looks trained-on; 0.5: indistinguishable
    privleak(auc_model, auc_retain)      # -100 for the target, 0 for a retain-like model

``logp`` is the list of teacher-forced log p(y_t) over the answer tokens, EOS last (see
``likelihood.answer_token_stats``). Pure functions of numbers: no model code.
"""
from __future__ import annotations

import math
import zlib
from typing import Sequence

MIN_K = 0.4  # the fraction of tokens Min-K% and Min-K%++ average


def _check(values: Sequence[float], what: str) -> list[float]:
    values = [float(v) for v in values]
    if not values:
        raise ValueError(f"{what}: no answer tokens")
    return values


def loss_score(logp: Sequence[float]) -> float:
    """LOSS attack: the mean NLL of the answer tokens."""
    logp = _check(logp, "loss")
    return -sum(logp) / len(logp)


def zlib_score(logp: Sequence[float], answer: str) -> float:
    """ZLib attack: mean NLL over the zlib-compressed length (bytes) of the answer text."""
    return loss_score(logp) / len(zlib.compress(answer.encode("utf-8")))


def _lowest_mean(values: list[float], k: float) -> float:
    n = max(1, int(len(values) * k))
    return sum(sorted(values)[:n]) / n


def min_k_score(logp: Sequence[float], k: float = MIN_K) -> float:
    """Min-K%: -mean of the lowest ``k`` fraction of token log-probs (at least one token)."""
    return -_lowest_mean(_check(logp, "min_k"), k)


def min_k_plus_plus_score(logp: Sequence[float], mu: Sequence[float], sigma: Sequence[float],
                          k: float = MIN_K) -> float:
    """Min-K%++: -mean of the lowest ``k`` fraction of (log p(y_t) - mu_t) / sigma_t, with mu_t and
    sigma_t the mean and standard deviation of log p under p_t itself. A position where p_t is
    one-hot (sigma_t = 0) scores 0 there: the token is as likely as the distribution's mean."""
    logp = _check(logp, "min_k_plus_plus")
    z = [(lp - m) / s if s > 0 else 0.0 for lp, m, s in zip(logp, mu, sigma, strict=True)]
    return -_lowest_mean(z, k)


def exact_memorisation(hits: Sequence[bool]) -> float:
    """Fraction of answer tokens (EOS excluded by the caller) that are the teacher-forced argmax."""
    hits = _check(hits, "exact_memorisation")
    return sum(hits) / len(hits)


def extraction_strength(hits: Sequence[bool]) -> float:
    """1 - k*/T: k* the shortest prefix after which every teacher-forced argmax matches the rest of
    the answer (T tokens, EOS excluded by the caller). 0 when not even the last token matches;
    one reference implementation returns 1/T there instead."""
    hits = _check(hits, "extraction_strength")
    T, k = len(hits), len(hits)
    while k > 0 and hits[k - 1]:
        k -= 1
    return 0.0 if k == T else 1.0 - k / T


def auc(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> float:
    """ROC AUC of "lower score = member": the fraction of (member, non-member) pairs in which the
    member scores lower, ties counting one half."""
    members, others = _check(member_scores, "auc members"), _check(nonmember_scores, "auc non-members")
    if any(math.isnan(v) for v in members + others):
        raise ValueError("auc: a score is NaN")
    ranked = sorted([(v, 0) for v in members] + [(v, 1) for v in others])
    # Mann-Whitney: sum of the non-members' (average) ranks among all scores.
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        mid = (i + 1 + j) / 2  # ranks i+1 .. j share their mean
        rank_sum += mid * sum(1 for _, label in ranked[i:j] if label)
        i = j
    n1, n0 = len(others), len(members)
    return (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0)


def privleak(auc_model: float, auc_retain: float) -> float | None:
    """((1 - AUC_model) - (1 - AUC_retain)) / (1 - AUC_retain) x 100; None when AUC_retain = 1."""
    if auc_retain >= 1.0:
        return None
    return ((1.0 - auc_model) - (1.0 - auc_retain)) / (1.0 - auc_retain) * 100.0
