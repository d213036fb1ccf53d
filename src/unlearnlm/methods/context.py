"""One training step's view of the batch: forwards each part at most once per model.

    ctx = LossContext(model, batch, ref_model=ref)
    ctx.logits("forget")          # policy forward, cached
    ctx.ref_logits("forget")      # frozen reference forward under no_grad, cached
    ctx.hidden("forget", 7)       # residual stream after decoder layer 7 (same forward)
    ctx.token_nll("forget")       # per-token NLL [B,T-1] and its mask
    ctx.per_position("retain", losses.kl_term, mask, with_ref=True)   # any per-position term [B,T-1]
    ctx.state["pdu_lambda"]       # state that lives across steps (MethodState, checkpointed)
    ctx.log("retain_nll", value)  # extra values for the trainer's logs

With ``chunk_size`` N > 0 (``unlearn.loss_chunk_size``) the [B,T,V] logits are never formed:
the forward stops at the final hidden states, and ``token_nll`` / ``per_position`` apply the
output head and the term to N positions at a time, each chunk checkpointed (its logits are
recomputed in the backward pass), so at most one chunk's logits exist at once. Only the
positions a loss reads are computed. ``logits()`` is not available then. docs/method.md, section 5.
"""
from __future__ import annotations

import contextlib
from typing import Mapping

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from unlearnlm.methods import chunked_head, losses

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
        chunk_size: int = 0,
    ):
        self.model = model
        self.batch = batch
        self.ref_model = ref_model
        self.state = state if state is not None else {}
        self.output_hidden = output_hidden or chunk_size > 0
        self.chunk_size = chunk_size
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
        self._no_full_logits()
        return self._output(name, ref=False, hidden=False).logits

    def ref_logits(self, name: str) -> Tensor:
        """Reference-model logits [B,T,V] of one part, without gradient."""
        self._no_full_logits()
        return self._output(name, ref=True, hidden=False).logits

    def token_nll(self, name: str, ref: bool = False) -> tuple[Tensor, Tensor]:
        """(per-token NLL [B,T-1] of the shifted targets, 0 where ignored; mask [B,T-1] bool),
        of the policy (with gradient) or the reference model (``ref``, without)."""
        labels = self.labels(name)
        if not self.chunk_size:
            return losses.token_nll(self.ref_logits(name) if ref else self.logits(name), labels)
        mask = labels[:, 1:] != losses.IGNORE_INDEX
        return self.per_position(name, losses.nll_term, mask, ref=ref), mask

    def per_position(self, name: str, term, mask: Tensor, ref: bool = False, with_ref: bool = False) -> Tensor:
        """``term(z, y, z_ref)`` at the positions of ``mask`` [B,T-1], 0 elsewhere. -> [B,T-1]

        z: float logits [n,V] predicting targets y [n] (the shifted labels) from the policy, or
        from the reference model when ``ref``; z_ref: the reference model's at the same positions
        when ``with_ref`` (else None)."""
        targets = self.labels(name)[:, 1:]
        index = mask.nonzero(as_tuple=True)
        if not self.chunk_size:
            z = (self.ref_logits(name) if ref else self.logits(name))[:, :-1].float()
            z_ref = self.ref_logits(name)[:, :-1].float()[index] if with_ref else None
            values = term(z[index], targets[index], z_ref)
        else:
            values = self._chunked(name, term, index, targets[index], ref, with_ref)
        return torch.zeros(mask.shape, dtype=values.dtype, device=values.device).index_put(index, values)

    def _chunked(self, name: str, term, index, y: Tensor, ref: bool, with_ref: bool) -> Tensor:
        model = self.ref_model if ref else self.model
        h = self._final_hidden(name, ref)[:, :-1][index]
        h_ref = self._final_hidden(name, True)[:, :-1][index] if with_ref else None
        module, head, n = _unwrap(model).get_output_embeddings(), output_head(model), self.chunk_size
        ref_head = output_head(self.ref_model) if with_ref else None

        def ref_chunk(start: int, stop: int) -> Tensor | None:
            if ref_head is None:
                return None
            with torch.no_grad():
                return ref_head(h_ref[start:stop]).float()

        if torch.is_grad_enabled() and not ref and chunked_head.supports(module):  # one weight-gradient buffer
            return chunked_head.chunked_head_term(h, module, term, y, n, _softcap_of(model), ref_chunk)

        def chunk(start: int, h_c: Tensor) -> Tensor:  # any other head: each chunk checkpointed
            return term(head(h_c).float(), y[start:start + n], ref_chunk(start, start + n))

        parts = []
        for s in range(0, h.shape[0], n):
            if ref or not torch.is_grad_enabled():
                with torch.no_grad():
                    parts.append(chunk(s, h[s:s + n]))
            else:
                parts.append(checkpoint(chunk, s, h[s:s + n], use_reentrant=False))
        return torch.cat(parts) if parts else h.new_zeros(0, dtype=torch.float32)

    def _final_hidden(self, name: str, ref: bool) -> Tensor:
        return self._output(name, ref=ref, hidden=True).hidden_states[-1]

    def _no_full_logits(self) -> None:
        if self.chunk_size:
            raise RuntimeError("with unlearn.loss_chunk_size > 0 a loss reads token_nll / per_position, "
                               "never the full [B,T,V] logits")

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
        if self.chunk_size:
            kwargs["logits_to_keep"] = 1  # the head runs in chunks, on the positions a loss reads
        return model(input_ids=part["input_ids"], attention_mask=part["attention_mask"], **kwargs)


def output_head(model: nn.Module):
    """hidden [n,d] -> logits [n,V] as the model's own forward computes them (its output
    embeddings, then Gemma-style final soft-capping when configured)."""
    head, cap = _unwrap(model).get_output_embeddings(), _softcap_of(model)
    if not cap:
        return head
    return lambda h: chunked_head.softcap(head(h), cap)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DDP and similar wrappers


def _softcap_of(model: nn.Module) -> float | None:
    return getattr(getattr(_unwrap(model), "config", None), "final_logit_softcapping", None) or None


def _layer(out, layer: int) -> Tensor:
    states = out.hidden_states  # (embeddings, after layer 0, ..., after the last layer + final norm)
    if not 0 <= layer < len(states) - 2:
        raise ValueError(
            f"hidden-state layer {layer} is out of range: the model has {len(states) - 1} decoder layers "
            f"and the last one's output is normalised, so use 0..{len(states) - 3}"
        )
    return states[layer + 1]
