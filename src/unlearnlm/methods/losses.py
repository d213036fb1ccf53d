"""Unlearning losses as small pure tensor functions (Yuan et al., ICLR 2025, section 3).

Conventions (Hugging Face causal LM): ``labels`` is aligned with ``input_ids`` and -100
marks ignored positions; every function shifts internally, so ``logits[:, t]`` predicts
``labels[:, t + 1]``. Shapes: B batch, T sequence length, V vocabulary. Log-probabilities
are computed in float32 whatever the model dtype.

    nll_theta = sequence_nll(logits, labels)          # [B]
    loss = npo_loss(nll_theta, nll_ref, beta=0.1)     # scalar
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -100
ME_DIRECTIONS = ("p_u", "u_p")


def _shift(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(logits[B,T-1,V] float32, targets[B,T-1], mask[B,T-1] bool)."""
    targets = labels[:, 1:]
    return logits[:, :-1].float(), targets, targets != IGNORE_INDEX


def token_nll(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per-token -log p(y_t | y_<t) of the shifted targets; 0 where ignored.

    logits [B,T,V], labels [B,T] -> (nll [B,T-1], mask [B,T-1] bool).
    """
    logits, targets, mask = _shift(logits, labels)
    nll = F.cross_entropy(
        logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
    )
    return nll, mask


def sequence_nll(logits: Tensor, labels: Tensor) -> Tensor:
    """NLL_sum(y|x): summed NLL of each sequence's target tokens. -> [B]"""
    nll, _ = token_nll(logits, labels)
    return nll.sum(dim=1)


def mean_nll(logits: Tensor, labels: Tensor) -> Tensor:
    """NLL_mean: all target-token NLL in the batch / number of target tokens (HF causal-LM loss).

    A batch without target tokens gives 0 rather than NaN. -> scalar
    """
    nll, mask = token_nll(logits, labels)
    return nll.sum() / mask.sum().clamp(min=1)


def ga_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """GA (gradient ascent), paper section 3: L_F = -NLL_mean(y_f | x_f). -> scalar"""
    return -mean_nll(logits, labels)


def npo_loss(nll_sum_theta: Tensor, nll_sum_ref: Tensor, beta: float) -> Tensor:
    """NPO (Zhang et al. 2024, eq. 3): -(2/beta) * mean log sigma(beta * (NLL_theta - NLL_ref)).

    nll_sum_theta, nll_sum_ref [B] (NLL_sum of the forget answers) -> scalar
    """
    return -(2.0 / beta) * F.logsigmoid(beta * (nll_sum_theta - nll_sum_ref)).mean()


def dpo_loss(
    nll_sum_theta_win: Tensor,
    nll_sum_theta_lose: Tensor,
    nll_sum_ref_win: Tensor,
    nll_sum_ref_lose: Tensor,
    beta: float,
) -> Tensor:
    """DPO (Rafailov et al. 2023, eq. 7) with win = refusal y_idk, lose = forget answer y_f.

    -(2/beta) * mean log sigma(beta * ((logp_theta_win - logp_theta_lose)
                                      - (logp_ref_win - logp_ref_lose))), log p = -NLL_sum.
    The 2/beta scale follows the paper's table so DPO and NPO share a scale.
    All inputs [B] -> scalar
    """
    theta_margin = nll_sum_theta_lose - nll_sum_theta_win  # logp_win - logp_lose
    ref_margin = nll_sum_ref_lose - nll_sum_ref_win
    return -(2.0 / beta) * F.logsigmoid(beta * (theta_margin - ref_margin)).mean()


def me_loss(logits: Tensor, labels: Tensor, direction: str = "p_u") -> Tensor:
    """ME (maximum entropy), paper section 3: mean over target positions of KL to uniform U.

    direction "p_u" (paper): KL(P_t || U) = log V - H(P_t).
    direction "u_p" (reference code's ``kl_div(log P, U)``): KL(U || P_t)
        = -log V - mean_v log P_t(v).
    Both are 0 exactly at the uniform distribution. Positions are the shifted labels != -100
    (with mask_question=false these cover question and answer tokens, never padding).
    logits [B,T,V], labels [B,T] -> scalar
    """
    if direction not in ME_DIRECTIONS:
        raise ValueError(f"me direction must be one of {ME_DIRECTIONS}, got {direction!r}")
    logits, _, mask = _shift(logits, labels)
    logp = F.log_softmax(logits, dim=-1)  # [B,T-1,V]
    log_v = math.log(logits.shape[-1])
    if direction == "p_u":
        kl = log_v + (logp.exp() * logp).sum(-1)  # log V - H(P_t), [B,T-1]
    else:
        kl = -log_v - logp.mean(-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def kl_regulariser(logits: Tensor, ref_logits: Tensor, attention_mask: Tensor) -> Tensor:
    """KL regulariser (paper section 3, from Yao et al. 2023): KL(P_ref || P_theta) per position.

    Averaged over real positions only: t < T-1 with attention_mask[:, t] and
    attention_mask[:, t+1] both 1 (the predicted token is real; under right padding the first
    condition is implied, under left padding it drops the last pad predicting the first
    token). The reference code averaged over every position of the padded batch instead.
    logits, ref_logits [B,T,V], attention_mask [B,T] -> scalar
    """
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # [B,T-1,V]
    ref_logp = F.log_softmax(ref_logits[:, :-1].float(), dim=-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)  # [B,T-1]
    mask = attention_mask[:, :-1].bool() & attention_mask[:, 1:].bool()
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def ap_loss(nll_sum_idk: Tensor, nll_sum_true: Tensor, beta: float) -> Tensor:
    """AP (answer preservation, Yuan et al. 2025, section 3): on retain questions prefer the true
    answer to a refusal: -(1/beta) * mean log sigma(beta * (NLL_sum(y_idk|x_r) - NLL_sum(y_r|x_r))).

    nll_sum_idk, nll_sum_true [B] -> scalar
    """
    return -(1.0 / beta) * F.logsigmoid(beta * (nll_sum_idk - nll_sum_true)).mean()
