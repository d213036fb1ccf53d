"""Forget losses, regularisers and the methods they combine into (``F+R``, e.g. ``ME+GD``).

    method = get_method("IDK+AP")
    method.parts        # frozenset({'forget_idk', 'retain', 'retain_idk'}): parts to collate
    method.needs_ref    # False: no reference model to load
    total, logs = method.loss(LossContext(model, batch), LossConfig(), 1.0, 1.0)

Adding a loss is one function and one decorator (the paper's in ``paper.py``, the field's
newer baselines in ``baselines.py``), e.g.

    @forget_loss("GA", parts={"forget"}, description="...", paper="...")
    def _ga(ctx, cfg): return losses.ga_loss(ctx.logits("forget"), ctx.labels("forget"))

A loss may declare defaults of the method options (``forget_coeff``, ``reg_coeff``,
``mask_question``), hidden-state needs, and state that lives across optimiser steps
(``init_state`` once per run, ``after_step`` after every optimiser step; the trainer
checkpoints it). Formulas: docs/method.md.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from torch import Tensor, nn

from unlearnlm.config.schema import LossConfig
from unlearnlm.errors import ConfigError
from unlearnlm.methods.context import LossContext
from unlearnlm.registry import Registry

LossFn = Callable[[LossContext, LossConfig], Tensor]
MethodState = dict[str, Tensor]  # tensors that live across steps, saved in every checkpoint
InitState = Callable[[nn.Module, LossConfig, int], MethodState]  # (model, cfg, seed) -> state
AfterStep = Callable[[MethodState, Mapping[str, float], LossConfig, float], None]  # (state, step means, cfg, epoch)

# What a loss may give a default for, and the defaults when none does.
BASE_DEFAULTS: Mapping[str, Any] = {"forget_coeff": 1.0, "reg_coeff": 1.0, "mask_question": True}


@dataclass(frozen=True, eq=False)
class LossSpec:
    """A registered loss: its function and what it needs from the batch and the models."""

    fn: LossFn
    parts: frozenset[str]
    needs_ref: bool = False
    description: str = ""
    paper: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)  # of BASE_DEFAULTS' keys
    needs_hidden: bool = False
    init_state: InitState | None = None
    after_step: AfterStep | None = None
    required: tuple[str, ...] = ()  # LossConfig fields that must be set (not None)


FORGET_LOSSES: Registry[LossSpec] = Registry("forget loss")
REGULARISERS: Registry[LossSpec] = Registry("regulariser")


def _registrar(registry: Registry[LossSpec]):
    def register(name: str, parts: Iterable[str], needs_ref: bool = False, description: str = "",
                 paper: str = "", defaults: Mapping[str, Any] | None = None, needs_hidden: bool = False,
                 init_state: InitState | None = None, after_step: AfterStep | None = None,
                 required: Iterable[str] = ()):
        unknown = set(defaults or {}) - set(BASE_DEFAULTS)
        if unknown:
            raise ValueError(f"{name}: defaults may only set {', '.join(BASE_DEFAULTS)}, not {sorted(unknown)}")

        def decorator(fn: LossFn) -> LossFn:
            desc = description or (fn.__doc__ or "").strip().split("\n")[0]
            spec = LossSpec(fn, frozenset(parts), needs_ref, desc, paper, dict(defaults or {}), needs_hidden,
                            init_state, after_step, tuple(required))
            registry.add(name, spec, desc)
            return fn

        return decorator

    return register


forget_loss = _registrar(FORGET_LOSSES)
regulariser = _registrar(REGULARISERS)


@dataclass(frozen=True, eq=False)
class Method:
    """L = forget_coeff * L_F + reg_coeff * L_R (L_R = 0 without a regulariser)."""

    name: str
    forget: LossSpec
    regulariser: LossSpec | None = None
    description: str = ""

    @property
    def specs(self) -> tuple[LossSpec, ...]:
        return (self.forget,) + ((self.regulariser,) if self.regulariser else ())

    @property
    def parts(self) -> frozenset[str]:
        return frozenset().union(*(s.parts for s in self.specs))

    @property
    def needs_ref(self) -> bool:
        return any(s.needs_ref for s in self.specs)

    @property
    def needs_hidden(self) -> bool:
        return any(s.needs_hidden for s in self.specs)

    @property
    def defaults(self) -> dict[str, Any]:
        """Method-option defaults: 1, 1 and mask_question=True unless a loss says otherwise
        (the forget loss's word wins over the regulariser's)."""
        out = dict(BASE_DEFAULTS)
        for spec in reversed(self.specs):
            out.update(spec.defaults)
        return out

    def init_state(self, model: nn.Module, cfg: LossConfig, seed: int) -> MethodState:
        state: MethodState = {}
        for spec in self.specs:
            if spec.init_state is not None:
                state.update(spec.init_state(model, cfg, seed))
        return state

    def after_step(self, state: MethodState, step_means: Mapping[str, float], cfg: LossConfig, epoch: float) -> None:
        for spec in self.specs:
            if spec.after_step is not None:
                spec.after_step(state, step_means, cfg, epoch)

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
        return total, {"forget_loss": forget.detach().item(), "reg_loss": reg_value, **ctx.logs}


FULL_METHODS: Registry[Method] = Registry("method")


def full_method(name: str, forget: LossSpec, regulariser: LossSpec | None, description: str) -> None:
    """Register a method under its own name (e.g. "LLMU", "RMU"); it wins over a forget loss of
    the same name, whose regulariser-free form is then spelled ``NAME+none``."""
    FULL_METHODS.add(name, Method(name, forget, regulariser, description), description)


def _combine(forget_name: str, reg_name: str | None) -> Method:
    forget = FORGET_LOSSES.entry(forget_name)
    if reg_name is None:
        name = f"{forget_name}+none" if forget_name in FULL_METHODS else forget_name
        return Method(name, forget.obj, None, f"{forget.description}; no regulariser")
    reg = REGULARISERS.entry(reg_name)
    return Method(
        f"{forget_name}+{reg_name}", forget.obj, reg.obj, f"{forget.description}; {reg.description}"
    )


def get_method(name: str) -> Method:
    """A method by name: ``F+R`` ("ME+GD"), ``F`` or ``F+none`` (no regulariser), or a full
    method ("LLMU", "RMU", "PDU")."""
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
        names += [f"{f}+none" if f in FULL_METHODS else f] + [f"{f}+{r}" for r in REGULARISERS.names()]
    return names + FULL_METHODS.names()


def describe_methods() -> list[tuple[str, str, str]]:
    """(kind, name, one line: description, paper, non-default options) for ``unlearnlm methods``:
    every forget loss, regulariser and full method (any forget loss combines with any regulariser)."""
    rows = []
    for kind, registry in (("forget loss", FORGET_LOSSES), ("regulariser", REGULARISERS)):
        for entry in registry:
            rows.append((kind, entry.name, _line(entry.obj.description, entry.obj.paper, entry.obj.defaults)))
    for entry in FULL_METHODS:
        method = entry.obj
        papers = "; ".join(dict.fromkeys(s.paper for s in method.specs if s.paper))
        rows.append(("method", entry.name, _line(method.description, papers, method.defaults)))
    return rows


def _line(description: str, paper: str, defaults: Mapping[str, Any]) -> str:
    changed = {k: v for k, v in defaults.items() if BASE_DEFAULTS[k] != v}
    opts = ", ".join(f"{k}={v}" for k, v in changed.items())
    return description + (f" [{paper}]" if paper else "") + (f" (default {opts})" if opts else "")
