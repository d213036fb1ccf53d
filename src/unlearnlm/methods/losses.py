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

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -100
ME_DIRECTIONS = ("p_u", "u_p")


def _shift(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(logits[B,T-1,V] float32, targets[B,T-1], mask[B,T-1] bool)."""
    targets = labels[:, 1:]
    return logits[:, :-1].float(), targets, targets != IGNORE_INDEX


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over ``mask`` (0 when the mask is empty). -> scalar"""
    return (values * mask).sum() / mask.sum().clamp(min=1)


# ---- per-position terms: float logits z [n, V] of n positions (and their targets y [n]) -> [n] ----
# The full-logit losses below and the chunked path of LossContext.per_position share them.

def nll_term(z: Tensor, y: Tensor, z_ref: Tensor | None = None) -> Tensor:
    """-log softmax(z)[y]."""
    return F.cross_entropy(z, y, reduction="none")


def me_term(z: Tensor, direction: str) -> Tensor:
    """KL(P || U) = log V - H(P) (``p_u``) or KL(U || P) = -log V - mean_v log P(v) (``u_p``)."""
    if direction not in ME_DIRECTIONS:
        raise ValueError(f"me direction must be one of {ME_DIRECTIONS}, got {direction!r}")
    logp = F.log_softmax(z, dim=-1)
    log_v = math.log(z.shape[-1])
    return log_v + (logp.exp() * logp).sum(-1) if direction == "p_u" else -log_v - logp.mean(-1)


def kl_term(z: Tensor, z_ref: Tensor) -> Tensor:
    """KL(P_ref || P_theta)."""
    logp, ref_logp = F.log_softmax(z, dim=-1), F.log_softmax(z_ref, dim=-1)
    return (ref_logp.exp() * (ref_logp - logp)).sum(-1)


def undial_term(z: Tensor, z_ref: Tensor, y: Tensor, beta: float) -> Tensor:
    """-sum_v q_v log P_theta(v), q = softmax(z_ref - beta * onehot(y))."""
    q = F.softmax(z_ref - beta * F.one_hot(y.clamp(min=0), z.shape[-1]).float(), dim=-1)
    return -(q * F.log_softmax(z, dim=-1)).sum(-1)


def ceu_term(z: Tensor, y: Tensor) -> Tensor:
    """-sum_v q_v log P_theta(v), q = softmax(detached z with z_y = -inf)."""
    q = F.softmax(z.detach().scatter(-1, y.clamp(min=0).unsqueeze(-1), float("-inf")), dim=-1)
    return -(q * F.log_softmax(z, dim=-1)).sum(-1)


def flatten_term(z: Tensor) -> Tensor:
    """(max_v z_v - mean_v z_v)^2 on the raw logits."""
    return (z.max(dim=-1).values - z.mean(dim=-1)).square()


def _per_position(term, logits: Tensor, *others: Tensor) -> Tensor:
    """``term`` over every position of [B, T', V] logits (and [B, T', ...] others). -> [B, T']"""
    b, t, v = logits.shape
    flat = [o.reshape(b * t, *o.shape[2:]) for o in others]
    return term(logits.reshape(b * t, v), *flat).view(b, t)


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
    logits, _, mask = _shift(logits, labels)
    return masked_mean(_per_position(lambda z: me_term(z, direction), logits), mask)


def kl_regulariser(logits: Tensor, ref_logits: Tensor, attention_mask: Tensor) -> Tensor:
    """KL regulariser (paper section 3, from Yao et al. 2023): KL(P_ref || P_theta) per position.

    Averaged over real positions only: t < T-1 with attention_mask[:, t] and
    attention_mask[:, t+1] both 1 (the predicted token is real; under right padding the first
    condition is implied, under left padding it drops the last pad predicting the first
    token). The reference code averaged over every position of the padded batch instead.
    logits, ref_logits [B,T,V], attention_mask [B,T] -> scalar
    """
    kl = _per_position(kl_term, logits[:, :-1].float(), ref_logits[:, :-1].float())
    return masked_mean(kl, kl_mask(attention_mask))


def kl_mask(attention_mask: Tensor) -> Tensor:
    """The KL regulariser's positions: t < T-1 with tokens t and t+1 both real. -> [B,T-1] bool"""
    return attention_mask[:, :-1].bool() & attention_mask[:, 1:].bool()


def ap_loss(nll_sum_idk: Tensor, nll_sum_true: Tensor, beta: float) -> Tensor:
    """AP (answer preservation, Yuan et al. 2025, section 3): on retain questions prefer the true
    answer to a refusal: -(1/beta) * mean log sigma(beta * (NLL_sum(y_idk|x_r) - NLL_sum(y_r|x_r))).

    nll_sum_idk, nll_sum_true [B] -> scalar
    """
    return -(1.0 / beta) * F.logsigmoid(beta * (nll_sum_idk - nll_sum_true)).mean()


# ---- the field's newer baselines (docs/method.md, "Baselines") ------------------------

def simnpo_loss(nll_sum: Tensor, n_tokens: Tensor, beta: float, gamma: float) -> Tensor:
    """SimNPO (Fan et al. 2024, arXiv 2410.07163): NPO without a reference model, on the
    length-normalised NLL: -(2/beta) * mean log sigma(beta * NLL_avg - gamma), NLL_avg = NLL_sum/|y|.
    gamma as in the paper (OpenUnlearning multiplies its margin by beta).

    nll_sum [B], n_tokens [B] (answer tokens per sequence) -> scalar
    """
    nll_avg = nll_sum / n_tokens.clamp(min=1)
    return -(2.0 / beta) * F.logsigmoid(beta * nll_avg - gamma).mean()


def weighted_ascent(nll: Tensor, mask: Tensor, weight) -> Tensor:
    """-(1/N) sum_t w_t * l_t over the N target tokens, w_t = weight(p_t) detached, p_t = exp(-l_t).
    nll, mask [B,T-1] (``token_nll``) -> scalar"""
    w = weight(torch.exp(-nll).detach()) * mask
    return -(w * nll).sum() / mask.sum().clamp(min=1)


def wga_weight(beta: float):
    """WGA's token weight p^beta."""
    return lambda p: p**beta


def satimp_weight(beta1: float, beta2: float):
    """SatImp's token weight p^beta1 * (1 - p)^beta2."""
    return lambda p: p**beta1 * (1 - p) ** beta2


def wga_loss(logits: Tensor, labels: Tensor, beta: float) -> Tensor:
    """WGA (weighted gradient ascent, arXiv 2502.19301): token weight w_t = p_theta(y_t)^beta.
    logits [B,T,V], labels [B,T] -> scalar"""
    return weighted_ascent(*token_nll(logits, labels), wga_weight(beta))


def satimp_loss(logits: Tensor, labels: Tensor, beta1: float, beta2: float) -> Tensor:
    """SatImp (arXiv 2505.11953): token weight w_t = p_t^beta1 * (1 - p_t)^beta2.
    logits [B,T,V], labels [B,T] -> scalar"""
    return weighted_ascent(*token_nll(logits, labels), satimp_weight(beta1, beta2))


def undial_loss(logits: Tensor, ref_logits: Tensor, labels: Tensor, beta: float) -> Tensor:
    """UNDIAL (arXiv 2402.10052): cross-entropy from q_t = softmax(z_ref,t - beta * onehot(y_t)) to
    p_theta,t, averaged over answer positions only (one reference implementation averages over
    every position, padding and question included).
    logits, ref_logits [B,T,V], labels [B,T] -> scalar"""
    logits, targets, mask = _shift(logits, labels)
    term = _per_position(lambda z, zr, y: undial_term(z, zr, y, beta), logits, ref_logits[:, :-1].float(), targets)
    return masked_mean(term, mask)


def ceu_mask(labels: Tensor, ignore_first: bool) -> Tensor:
    """CE-U's positions: the shifted targets, without the first answer token when ``ignore_first``."""
    mask = labels[:, 1:] != IGNORE_INDEX
    return mask & (mask.long().cumsum(dim=1) > 1) if ignore_first else mask


def ceu_loss(logits: Tensor, labels: Tensor, ignore_first: bool = True) -> Tensor:
    """CE-U (arXiv 2503.01224): cross-entropy from q_t = softmax(detached z_t with the true token's
    logit set to -inf) to p_theta,t; the position predicting the first answer token is skipped
    when ``ignore_first``. logits [B,T,V], labels [B,T] -> scalar"""
    logits, targets, _ = _shift(logits, labels)
    return masked_mean(_per_position(ceu_term, logits, targets), ceu_mask(labels, ignore_first))


def flatten_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """PDU's forget loss (arXiv 2506.05314): mean over answer positions of
    (max_v z_t,v - mean_v z_t,v)^2 on the raw logits; 0 when the logits are flat.
    logits [B,T,V], labels [B,T] -> scalar"""
    logits, _, mask = _shift(logits, labels)
    return masked_mean(_per_position(flatten_term, logits), mask)


def rmu_distance(hidden: Tensor, target: Tensor, labels: Tensor) -> Tensor:
    """RMU (WMDP, arXiv 2403.03218): mean over answer tokens of (1/d) * ||h_t - target_t||^2.

    The positions are the answer tokens themselves (labels != -100, unshifted: a hidden state
    belongs to its own token). hidden [B,T,d]; target [d] (control vector) or [B,T,d] -> scalar
    """
    mask = labels != IGNORE_INDEX
    d2 = (hidden.float() - target.float()).square().mean(dim=-1)
    return (d2 * mask).sum() / mask.sum().clamp(min=1)


def rmu_control_vector(dim: int, coeff: float, seed: int) -> Tensor:
    """c = coeff * u / ||u||, u ~ U[0,1)^dim from a generator seeded with ``seed``. -> [dim]"""
    u = torch.rand(dim, generator=torch.Generator().manual_seed(seed))
    return coeff * u / u.norm()
