"""Unlearning methods: losses (``losses``), per-step forwards (``context``), the registry and
its entries (``paper``: the seed paper's losses; ``baselines``: the field's newer ones)."""
from unlearnlm.config.schema import LossConfig
from unlearnlm.methods import baselines, paper  # noqa: F401  (register the losses)
from unlearnlm.methods.context import LossContext
from unlearnlm.methods.registry import (
    FORGET_LOSSES,
    FULL_METHODS,
    REGULARISERS,
    LossSpec,
    Method,
    all_method_names,
    describe_methods,
    get_method,
)

__all__ = [
    "FORGET_LOSSES",
    "FULL_METHODS",
    "REGULARISERS",
    "LossConfig",
    "LossContext",
    "LossSpec",
    "Method",
    "all_method_names",
    "describe_methods",
    "get_method",
]
