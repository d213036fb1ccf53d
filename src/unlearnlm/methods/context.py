"""One training step's view of the batch: forwards each part at most once per model.

    ctx = LossContext(model, batch, ref_model=ref)
    ctx.logits("forget")          # policy forward, cached
    ctx.ref_logits("forget")      # frozen reference forward under no_grad, cached
    ctx.hidden("forget", 7)       # residual stream after decoder layer 7 (same forward)
    ctx.state["pdu_lambda"]       # state that lives across steps (MethodState, checkpointed)
    ctx.log("retain_nll", value)  # extra values for the trainer's logs
"""
from __future__ import annotations

import contextlib
from typing import Mapping

import torch
from torch import Tensor, nn

Part = Mapping[str, Tensor]  # input_ids, attention_mask, labels: each [B,T]


class LossContext:
    """Lazy, cached forwards of the batch parts ("forget", "forget_idk", "retain", ...).

    Build a new context for every step: the cached policy outputs hold the autograd graph.
    ``output_hidden=True`` asks every forward for hidden states, so a method that needs both
    logits and hidden states of a part (``Method.needs_hidden``) runs one forward, not two.
    """

    def __init__(
        self,
        model: nn.Module,
        batch: Mapping[str, Part],
        ref_model: nn.Module | None = None,
        state: dict[str, Tensor] | None = None,
        output_hidden: bool = False,
    ):
        self.model = model
        self.batch = batch
        self.ref_model = ref_model
        self.state = state if state is not None else {}
        self.output_hidden = output_hidden
        self.logs: dict[str, float] = {}
        self._outputs: dict[str, object] = {}
        self._ref_outputs: dict[str, object] = {}

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
        return self._output(name, ref=False, hidden=False).logits

    def ref_logits(self, name: str) -> Tensor:
        """Reference-model logits [B,T,V] of one part, without gradient."""
        return self._output(name, ref=True, hidden=False).logits

    def hidden(self, name: str, layer: int) -> Tensor:
        """Policy residual stream [B,T,d] after decoder layer ``layer`` (0-based), with gradient."""
        return _layer(self._output(name, ref=False, hidden=True), layer)

    def ref_hidden(self, name: str, layer: int) -> Tensor:
        """Reference-model residual stream [B,T,d] after decoder layer ``layer``, without gradient."""
        return _layer(self._output(name, ref=True, hidden=True), layer)

    def log(self, key: str, value: Tensor | float) -> None:
        """Record a value for the trainer's logs (averaged over the steps between two logs)."""
        self.logs[key] = float(value.detach().item() if isinstance(value, Tensor) else value)

    def _output(self, name: str, ref: bool, hidden: bool):
        cache = self._ref_outputs if ref else self._outputs
        out = cache.get(name)
        if out is None or (hidden and getattr(out, "hidden_states", None) is None):
            model = self.ref_model if ref else self.model
            if model is None:
                raise RuntimeError(
                    f"a reference forward of {name!r} needs a reference model, but LossContext got "
                    "ref_model=None; load one when Method.needs_ref is true"
                )
            with torch.no_grad() if ref else contextlib.nullcontext():
                out = self._forward(model, name, hidden or self.output_hidden)
            cache[name] = out
        return out

    def _forward(self, model: nn.Module, name: str, hidden: bool):
        part = self.part(name)
        kwargs = {"output_hidden_states": True} if hidden else {}
        return model(input_ids=part["input_ids"], attention_mask=part["attention_mask"], **kwargs)


def _layer(out, layer: int) -> Tensor:
    states = out.hidden_states  # (embeddings, after layer 0, ..., after the last layer + final norm)
    if not 0 <= layer < len(states) - 2:
        raise ValueError(
            f"hidden-state layer {layer} is out of range: the model has {len(states) - 1} decoder layers "
            f"and the last one's output is normalised, so use 0..{len(states) - 3}"
        )
    return states[layer + 1]
