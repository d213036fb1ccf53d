"""Unlearning methods: losses (``losses``), per-step forwards (``context``), registries."""
from unlearnlm.methods.context import LossContext
from unlearnlm.methods.registry import (
    FORGET_LOSSES,
    FULL_METHODS,
    REGULARISERS,
    LossConfig,
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
