"""Forget losses, regularisers and the methods they combine into (``F+R``, e.g. ``ME+GD``).

    method = get_method("IDK+AP")
    method.parts        # frozenset({'forget_idk', 'retain', 'retain_idk'}): parts to collate
    method.needs_ref    # False: no reference model to load
    total, logs = method.loss(LossContext(model, batch), LossConfig(), 1.0, 1.0)

Adding a loss is one function and one decorator, e.g.

    @forget_loss("GA", parts={"forget"}, description="...")
    def _ga(ctx, cfg): return losses.ga_loss(ctx.logits("forget"), ctx.labels("forget"))
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Callable, Iterable

from torch import Tensor

from unlearnlm.errors import ConfigError
from unlearnlm.methods import losses
from unlearnlm.methods.context import LossContext
from unlearnlm.registry import Registry


@dataclass(frozen=True)
class LossConfig:
    """Loss hyperparameters shared by all methods."""

    beta: float = 0.1  # NPO/DPO/AP inverse temperature (paper value)
    # ME divergence: "p_u" = KL(P||U) as in the paper; "u_p" = KL(U||P) as the reference code
    me_direction: str = "p_u"

    def __post_init__(self) -> None:
        errors = []
        ok = isinstance(self.beta, (int, float)) and not isinstance(self.beta, bool)
        if not (ok and math.isfinite(self.beta) and self.beta > 0):
            errors.append(f"beta must be a finite number > 0, got {self.beta!r}")
        if self.me_direction not in losses.ME_DIRECTIONS:
            errors.append(
                f"me_direction must be one of {', '.join(losses.ME_DIRECTIONS)}, "
                f"got {self.me_direction!r}"
            )
        if errors:
            raise ConfigError("; ".join(errors))


LossFn = Callable[[LossContext, LossConfig], Tensor]


@dataclass(frozen=True)
class LossSpec:
    """A registered loss: its function and what it needs from the batch and the models."""

    fn: LossFn
    parts: frozenset[str]
    needs_ref: bool = False
    description: str = ""


FORGET_LOSSES: Registry[LossSpec] = Registry("forget loss")
REGULARISERS: Registry[LossSpec] = Registry("regulariser")


def _registrar(registry: Registry[LossSpec]):
    def register(name: str, parts: Iterable[str], needs_ref: bool = False, description: str = ""):
        def decorator(fn: LossFn) -> LossFn:
            desc = description or (fn.__doc__ or "").strip().split("\n")[0]
            registry.add(name, LossSpec(fn, frozenset(parts), needs_ref, desc), desc)
            return fn

        return decorator

    return register


forget_loss = _registrar(FORGET_LOSSES)
regulariser = _registrar(REGULARISERS)


def _nll_sum(ctx: LossContext, part: str, ref: bool = False) -> Tensor:
    logits = ctx.ref_logits(part) if ref else ctx.logits(part)
    return losses.sequence_nll(logits, ctx.labels(part))


def _nll_mean(ctx: LossContext, part: str) -> Tensor:
    return losses.mean_nll(ctx.logits(part), ctx.labels(part))


# ---- forget losses -------------------------------------------------------------------

@forget_loss("GA", {"forget"}, description="gradient ascent on forget answers")
def _ga(ctx: LossContext, cfg: LossConfig) -> Tensor:
    return losses.ga_loss(ctx.logits("forget"), ctx.labels("forget"))


@forget_loss("NPO", {"forget"}, needs_ref=True,
             description="negative preference optimisation on forget answers")
def _npo(ctx: LossContext, cfg: LossConfig) -> Tensor:
    return losses.npo_loss(_nll_sum(ctx, "forget"), _nll_sum(ctx, "forget", ref=True), cfg.beta)


@forget_loss("DPO", {"forget", "forget_idk"}, needs_ref=True,
             description="DPO: prefer a refusal to the forget answer")
def _dpo(ctx: LossContext, cfg: LossConfig) -> Tensor:
    return losses.dpo_loss(
        _nll_sum(ctx, "forget_idk"), _nll_sum(ctx, "forget"),
        _nll_sum(ctx, "forget_idk", ref=True), _nll_sum(ctx, "forget", ref=True),
        cfg.beta,
    )


@forget_loss("IDK", {"forget_idk"}, description="fine-tune forget questions to a refusal")
def _idk(ctx: LossContext, cfg: LossConfig) -> Tensor:
    return _nll_mean(ctx, "forget_idk")


@forget_loss("ME", {"forget"}, description="maximise next-token entropy on forget data")
def _me(ctx: LossContext, cfg: LossConfig) -> Tensor:
    return losses.me_loss(ctx.logits("forget"), ctx.labels("forget"), cfg.me_direction)


# ---- regularisers --------------------------------------------------------------------

@regulariser("GD", {"retain"}, description="NLL on retain answers")
def _gd(ctx: LossContext, cfg: LossConfig) -> Tensor:
    return _nll_mean(ctx, "retain")


@regulariser("KL", {"retain"}, needs_ref=True,
             description="KL(ref || model) on retain data")
def _kl(ctx: LossContext, cfg: LossConfig) -> Tensor:
    return losses.kl_regulariser(
        ctx.logits("retain"), ctx.ref_logits("retain"), ctx.attention_mask("retain")
    )


@regulariser("AP", {"retain", "retain_idk"},
             description="prefer true retain answers to a refusal")
def _ap(ctx: LossContext, cfg: LossConfig) -> Tensor:
    return losses.ap_loss(_nll_sum(ctx, "retain_idk"), _nll_sum(ctx, "retain"), cfg.beta)


# ---- methods -------------------------------------------------------------------------

@dataclass(frozen=True)
class Method:
    """L = forget_coeff * L_F + reg_coeff * L_R (L_R = 0 without a regulariser)."""

    name: str
    forget: LossSpec
    regulariser: LossSpec | None = None
    description: str = ""

    @property
    def parts(self) -> frozenset[str]:
        return self.forget.parts | (self.regulariser.parts if self.regulariser else frozenset())

    @property
    def needs_ref(self) -> bool:
        return self.forget.needs_ref or bool(self.regulariser and self.regulariser.needs_ref)

    def loss(
        self, ctx: LossContext, cfg: LossConfig, forget_coeff: float = 1.0, reg_coeff: float = 1.0
    ) -> tuple[Tensor, dict[str, float]]:
        forget = self.forget.fn(ctx, cfg)
        total = forget_coeff * forget
        reg_value = 0.0
        if self.regulariser is not None:
            reg = self.regulariser.fn(ctx, cfg)
            total = total + reg_coeff * reg
            reg_value = reg.detach().item()
        return total, {"forget_loss": forget.detach().item(), "reg_loss": reg_value}


def _llmu_forget(ctx: LossContext, cfg: LossConfig) -> Tensor:
    # LLMU (Yao et al. 2023): ascend on the forget answer, descend on a random retain answer
    # given the same forget question ("forget_mismatch").
    return -_nll_mean(ctx, "forget") + _nll_mean(ctx, "forget_mismatch")


FULL_METHODS: Registry[Method] = Registry("method")
FULL_METHODS.add(
    "LLMU",
    Method(
        "LLMU",
        LossSpec(_llmu_forget, frozenset({"forget", "forget_mismatch"}), False,
                 "GA + NLL of random retain answers to forget questions"),
        REGULARISERS.get("KL"),
        "GA + NLL of random retain answers to forget questions; KL on retain data",
    ),
)


def _combine(forget_name: str, reg_name: str | None) -> Method:
    forget = FORGET_LOSSES.entry(forget_name)
    if reg_name is None:
        return Method(forget_name, forget.obj, None, f"{forget.description}; no regulariser")
    reg = REGULARISERS.entry(reg_name)
    return Method(
        f"{forget_name}+{reg_name}", forget.obj, reg.obj, f"{forget.description}; {reg.description}"
    )


def get_method(name: str) -> Method:
    """A method by name: ``F+R`` ("ME+GD"), ``F`` or ``F+none`` (no regulariser), or "LLMU"."""
    name = name.strip()
    if name in FULL_METHODS:
        return FULL_METHODS.get(name)
    forget_name, plus, reg_name = (s.strip() for s in name.partition("+"))
    if not plus and forget_name not in FORGET_LOSSES:
        close = difflib.get_close_matches(name, all_method_names(), n=1, cutoff=0.5)
        close = close or [n for n in all_method_names() if n.lower() == name.lower()]
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown method {name!r}{hint} "
            f"Name a forget loss ({', '.join(FORGET_LOSSES.names())}), "
            f"optionally '+' a regulariser ({', '.join(REGULARISERS.names())}), "
            f"or a full method ({', '.join(FULL_METHODS.names())})"
        )
    return _combine(forget_name, None if not plus or reg_name.lower() == "none" else reg_name)


def all_method_names() -> list[str]:
    """Every forget loss alone and with every regulariser, then the full methods."""
    names = []
    for f in FORGET_LOSSES.names():
        names += [f] + [f"{f}+{r}" for r in REGULARISERS.names()]
    return names + FULL_METHODS.names()


def describe_methods() -> list[tuple[str, str]]:
    """(name, one-line description) rows for ``unlearnlm methods``."""
    return [(n, get_method(n).description) for n in all_method_names()]
