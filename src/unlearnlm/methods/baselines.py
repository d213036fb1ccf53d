"""The field's newer baselines, as OpenUnlearning reports them (docs/method.md, "Baselines"):
forget losses SimNPO, RMU, UNDIAL, WGA, SatImp, CEU, PDU; regularisers ACT (RMU's retain
term) and DUAL (PDU's constrained retain loss); full methods RMU = RMU+ACT and PDU = PDU+DUAL.
Each combines with any other regulariser as well (``SimNPO+GD``, ``WGA+KL``, ``RMU+GD``...)."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from unlearnlm.config.schema import LossConfig
from unlearnlm.errors import ConfigError
from unlearnlm.methods import losses
from unlearnlm.methods.context import LossContext
from unlearnlm.methods.paper import nll_mean, nll_sum
from unlearnlm.methods.registry import FORGET_LOSSES, REGULARISERS, MethodState, forget_loss, full_method, regulariser


def state_value(ctx: LossContext, key: str) -> Tensor:
    """A method-state tensor, or a clear error when the state was never initialised."""
    if key not in ctx.state:
        raise RuntimeError(
            f"method state {key!r} is missing: build it with Method.init_state(model, cfg, seed) "
            "and pass it to LossContext(state=...)"
        )
    return ctx.state[key]


# ---- SimNPO, WGA, SatImp, CE-U: reference-free reshapings of the forget likelihood -----------

@forget_loss("SimNPO", {"forget"}, defaults={"forget_coeff": 0.125}, paper="Fan et al. 2024, arXiv 2410.07163",
             description="NPO without a reference model, on the length-normalised NLL")
def _simnpo(ctx: LossContext, cfg: LossConfig) -> Tensor:
    n_tokens = (ctx.labels("forget")[:, 1:] != losses.IGNORE_INDEX).sum(dim=1)
    return losses.simnpo_loss(nll_sum(ctx, "forget"), n_tokens, cfg.simnpo_beta, cfg.simnpo_gamma)


@forget_loss("WGA", {"forget"}, paper="arXiv 2502.19301",
             description="gradient ascent with token weights p^beta (weighted GA)")
def _wga(ctx: LossContext, cfg: LossConfig) -> Tensor:  # losses.wga_loss
    return losses.weighted_ascent(*ctx.token_nll("forget"), losses.wga_weight(cfg.wga_beta))


@forget_loss("SatImp", {"forget"}, defaults={"forget_coeff": 0.1}, paper="arXiv 2505.11953",
             description="gradient ascent with token weights p^beta1 (1-p)^beta2")
def _satimp(ctx: LossContext, cfg: LossConfig) -> Tensor:  # losses.satimp_loss
    return losses.weighted_ascent(*ctx.token_nll("forget"), losses.satimp_weight(cfg.satimp_beta1, cfg.satimp_beta2))


@forget_loss("CEU", {"forget"}, paper="CE-U, arXiv 2503.01224",
             description="cross-entropy to the model's own distribution without the true token")
def _ceu(ctx: LossContext, cfg: LossConfig) -> Tensor:  # losses.ceu_loss
    mask = losses.ceu_mask(ctx.labels("forget"), cfg.ceu_ignore_first)
    return losses.masked_mean(ctx.per_position("forget", lambda z, y, z_ref: losses.ceu_term(z, y), mask), mask)


@forget_loss("UNDIAL", {"forget"}, needs_ref=True, defaults={"reg_coeff": 0.0}, paper="arXiv 2402.10052",
             description="self-distillation to the reference logits with the true token lowered by beta")
def _undial(ctx: LossContext, cfg: LossConfig) -> Tensor:  # losses.undial_loss
    mask = ctx.labels("forget")[:, 1:] != losses.IGNORE_INDEX
    term = ctx.per_position("forget", lambda z, y, z_ref: losses.undial_term(z, z_ref, y, cfg.undial_beta), mask,
                            with_ref=True)
    return losses.masked_mean(term, mask)


# ---- RMU: steer one layer's activations on forget data to a random vector ------------------

def rmu_layer(model: nn.Module, cfg: LossConfig) -> int:
    """``unlearn.rmu_layer``, or round(7 * n_layers / 32) (WMDP's layer 7 of 32) when unset."""
    n_layers = model.config.get_text_config().num_hidden_layers
    layer = cfg.rmu_layer if cfg.rmu_layer is not None else round(7 * n_layers / 32)
    if not 0 <= layer < n_layers - 1:
        raise ConfigError(f"unlearn.rmu_layer: {layer} is out of range for a model with {n_layers} decoder "
                          f"layers (0..{n_layers - 2}; the last layer's output is normalised)")
    return layer


def _layer_state(model: nn.Module, cfg: LossConfig, seed: int) -> MethodState:
    return {"rmu_layer": torch.tensor(rmu_layer(model, cfg))}


def _rmu_state(model: nn.Module, cfg: LossConfig, seed: int) -> MethodState:
    dim = model.config.get_text_config().hidden_size
    return _layer_state(model, cfg, seed) | {"rmu_control": losses.rmu_control_vector(dim, cfg.rmu_coeff, seed)}


@forget_loss("RMU", {"forget"}, needs_hidden=True, init_state=_rmu_state, paper="Li et al. 2024 (WMDP), arXiv 2403.03218",
             description="steer layer-L activations on forget answers to a fixed random vector c")
def _rmu(ctx: LossContext, cfg: LossConfig) -> Tensor:
    h = ctx.hidden("forget", int(state_value(ctx, "rmu_layer")))
    return losses.rmu_distance(h, state_value(ctx, "rmu_control").to(h.device), ctx.labels("forget"))


@regulariser("ACT", {"retain"}, needs_ref=True, needs_hidden=True, init_state=_layer_state,
             paper="Li et al. 2024 (WMDP), arXiv 2403.03218",
             description="RMU's retain term: layer-L activations on retain answers stay the reference's")
def _act(ctx: LossContext, cfg: LossConfig) -> Tensor:
    layer = int(state_value(ctx, "rmu_layer"))
    return losses.rmu_distance(ctx.hidden("retain", layer), ctx.ref_hidden("retain", layer), ctx.labels("retain"))


full_method("RMU", FORGET_LOSSES.get("RMU"), REGULARISERS.get("ACT"),
            "steer layer-L activations on forget answers to a random vector; keep them on retain answers")


# ---- PDU: a flattening forget loss under a retain-loss constraint (primal-dual) -------------

@forget_loss("PDU", {"forget"}, paper="arXiv 2506.05314",
             description="flatten the logits on forget answers: (max z - mean z)^2")
def _pdu(ctx: LossContext, cfg: LossConfig) -> Tensor:  # losses.flatten_loss
    mask = ctx.labels("forget")[:, 1:] != losses.IGNORE_INDEX
    return losses.masked_mean(ctx.per_position("forget", lambda z, y, z_ref: losses.flatten_term(z), mask), mask)


def _dual_state(model: nn.Module, cfg: LossConfig, seed: int) -> MethodState:
    return {"pdu_lambda": torch.tensor(cfg.pdu_lambda0, dtype=torch.float64)}


def _dual_step(state: MethodState, step_means: Mapping[str, float], cfg: LossConfig, epoch: float) -> None:
    """lambda <- max(0, lambda + eta * (L_R - eps)) after each optimiser step past the warm-up
    (``epoch`` is the progress after the step); L_R is the step's mean retain NLL."""
    if epoch <= cfg.pdu_dual_warmup_epochs + 1e-9:
        return
    new = float(state["pdu_lambda"]) + cfg.pdu_eta * (step_means["retain_nll"] - cfg.pdu_eps)
    state["pdu_lambda"] = torch.tensor(max(0.0, new), dtype=torch.float64)


@regulariser("DUAL", {"retain"}, init_state=_dual_state, after_step=_dual_step, required=("pdu_eps",),
             paper="arXiv 2506.05314",
             description="PDU's constraint: lambda * (retain NLL - eps), lambda a dual variable")
def _dual(ctx: LossContext, cfg: LossConfig) -> Tensor:
    lam = state_value(ctx, "pdu_lambda")
    retain_nll = nll_mean(ctx, "retain")
    ctx.log("retain_nll", retain_nll)
    ctx.log("dual_lambda", lam)
    return float(lam) * (retain_nll - cfg.pdu_eps)


full_method("PDU", FORGET_LOSSES.get("PDU"), REGULARISERS.get("DUAL"),
            "flatten the logits on forget answers under a retain-loss constraint (primal-dual)")
