"""One training step's view of the batch: forwards each part at most once per model.

    ctx = LossContext(model, batch, ref_model=ref)
    ctx.logits("forget")       # policy forward, cached
    ctx.ref_logits("forget")   # frozen reference forward under no_grad, cached
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

Part = Mapping[str, Tensor]  # input_ids, attention_mask, labels: each [B,T]


class LossContext:
    """Lazy, cached forwards of the batch parts ("forget", "forget_idk", "retain", ...).

    Build a new context for every step: the cached policy logits hold the autograd graph.
    """

    def __init__(
        self,
        model: nn.Module,
        batch: Mapping[str, Part],
        ref_model: nn.Module | None = None,
    ):
        self.model = model
        self.batch = batch
        self.ref_model = ref_model
        self._logits: dict[str, Tensor] = {}
        self._ref_logits: dict[str, Tensor] = {}

    def part(self, name: str) -> Part:
        if name not in self.batch:
            raise KeyError(
                f"batch has no part {name!r} (parts: {', '.join(self.batch) or 'none'}); "
                "the loss's declared parts and the collator disagree"
            )
        return self.batch[name]

    def labels(self, name: str) -> Tensor:
        return self.part(name)["labels"]

    def attention_mask(self, name: str) -> Tensor:
        return self.part(name)["attention_mask"]

    def logits(self, name: str) -> Tensor:
        """Policy logits [B,T,V] of one part, with gradient."""
        if name not in self._logits:
            self._logits[name] = self._forward(self.model, name)
        return self._logits[name]

    def ref_logits(self, name: str) -> Tensor:
        """Reference-model logits [B,T,V] of one part, without gradient."""
        if self.ref_model is None:
            raise RuntimeError(
                f"ref_logits({name!r}) needs a reference model, but LossContext got "
                "ref_model=None; load one when Method.needs_ref is true"
            )
        if name not in self._ref_logits:
            with torch.no_grad():
                self._ref_logits[name] = self._forward(self.ref_model, name)
        return self._ref_logits[name]

    def _forward(self, model: nn.Module, name: str) -> Tensor:
        part = self.part(name)
        return model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits
