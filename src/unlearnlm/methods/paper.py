"""The seed paper's losses (Yuan et al., ICLR 2025, arXiv 2410.08109; docs/method.md, "Losses"):
forget losses GA, NPO, DPO, IDK, ME; regularisers GD, KL, AP; and the LLMU baseline."""
from __future__ import annotations

from torch import Tensor

from unlearnlm.config.schema import LossConfig
from unlearnlm.methods import losses
from unlearnlm.methods.context import LossContext
from unlearnlm.methods.registry import LossSpec, REGULARISERS, forget_loss, full_method, regulariser

SEED_PAPER = "Yuan et al. 2025, arXiv 2410.08109"


def nll_sum(ctx: LossContext, part: str, ref: bool = False) -> Tensor:
    """NLL_sum of each sequence of one part, policy or reference (``losses.sequence_nll``). -> [B]"""
    return ctx.token_nll(part, ref)[0].sum(dim=1)


def nll_mean(ctx: LossContext, part: str) -> Tensor:
    """Token-averaged NLL of one part, the HF causal-LM loss (``losses.mean_nll``). -> scalar"""
    nll, mask = ctx.token_nll(part)
    return nll.sum() / mask.sum().clamp(min=1)


# ---- forget losses -------------------------------------------------------------------

@forget_loss("GA", {"forget"}, description="gradient ascent on forget answers", paper="Jang et al. 2023")
def _ga(ctx: LossContext, cfg: LossConfig) -> Tensor:
    return -nll_mean(ctx, "forget")  # losses.ga_loss


@forget_loss("NPO", {"forget"}, needs_ref=True, paper="Zhang et al. 2024, arXiv 2404.05868",
             description="negative preference optimisation on forget answers")
def _npo(ctx: LossContext, cfg: LossConfig) -> Tensor:
    return losses.npo_loss(nll_sum(ctx, "forget"), nll_sum(ctx, "forget", ref=True), cfg.beta)


@forget_loss("DPO", {"forget", "forget_idk"}, needs_ref=True, paper="Rafailov et al. 2023",
             description="DPO: prefer a refusal to the forget answer")
def _dpo(ctx: LossContext, cfg: LossConfig) -> Tensor:
    return losses.dpo_loss(
        nll_sum(ctx, "forget_idk"), nll_sum(ctx, "forget"),
        nll_sum(ctx, "forget_idk", ref=True), nll_sum(ctx, "forget", ref=True),
        cfg.beta,
    )


@forget_loss("IDK", {"forget_idk"}, description="fine-tune forget questions to a refusal",
             paper="Maini et al. 2024 (TOFU)")
def _idk(ctx: LossContext, cfg: LossConfig) -> Tensor:
    return nll_mean(ctx, "forget_idk")


@forget_loss("ME", {"forget"}, description="maximise next-token entropy on forget data", paper=SEED_PAPER,
             defaults={"mask_question": False})  # the paper: ME learns from question tokens too
def _me(ctx: LossContext, cfg: LossConfig) -> Tensor:  # losses.me_loss
    mask = ctx.labels("forget")[:, 1:] != losses.IGNORE_INDEX
    kl = ctx.per_position("forget", lambda z, y, z_ref: losses.me_term(z, cfg.me_direction), mask)
    return losses.masked_mean(kl, mask)


# ---- regularisers --------------------------------------------------------------------

@regulariser("GD", {"retain"}, description="NLL on retain answers", paper="Liu et al. 2022")
def _gd(ctx: LossContext, cfg: LossConfig) -> Tensor:
    return nll_mean(ctx, "retain")


@regulariser("KL", {"retain"}, needs_ref=True, description="KL(ref || model) on retain data",
             paper="Yao et al. 2023, arXiv 2310.10683")
def _kl(ctx: LossContext, cfg: LossConfig) -> Tensor:  # losses.kl_regulariser
    mask = losses.kl_mask(ctx.attention_mask("retain"))
    kl = ctx.per_position("retain", lambda z, y, z_ref: losses.kl_term(z, z_ref), mask, with_ref=True)
    return losses.masked_mean(kl, mask)


@regulariser("AP", {"retain", "retain_idk"}, description="prefer true retain answers to a refusal",
             paper=SEED_PAPER)
def _ap(ctx: LossContext, cfg: LossConfig) -> Tensor:
    return losses.ap_loss(nll_sum(ctx, "retain_idk"), nll_sum(ctx, "retain"), cfg.beta)


# ---- LLMU ----------------------------------------------------------------------------
# LLMU (Yao et al. 2023): ascend on the forget answer; descend on a random retain answer given
# the same forget question ("forget_mismatch"), plus KL on retain data. The mismatch term sits
# in the regulariser, as in the reference code (so reg_coeff, not forget_coeff, scales it).

def _llmu_forget(ctx: LossContext, cfg: LossConfig) -> Tensor:
    return -nll_mean(ctx, "forget")


def _llmu_regulariser(ctx: LossContext, cfg: LossConfig) -> Tensor:
    return nll_mean(ctx, "forget_mismatch") + _kl(ctx, cfg)


full_method(
    "LLMU",
    LossSpec(_llmu_forget, frozenset({"forget"}), False, "GA on the forget answers", "Yao et al. 2023, arXiv 2310.10683"),
    LossSpec(_llmu_regulariser, frozenset({"forget_mismatch", "retain"}), True,
             "NLL of random retain answers to forget questions + KL on retain data", "Yao et al. 2023, arXiv 2310.10683"),
    "GA; regulariser: NLL of random retain answers to forget questions + KL on retain data",
)
