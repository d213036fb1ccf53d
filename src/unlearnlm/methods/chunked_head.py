"""The output head and a per-position loss term over chunks of positions, with one gradient
buffer for the head's weight (docs/method.md, section 5).

    values = chunked_head_term(h, head, term, y, chunk=32, cap=None, ref_chunk=lambda s, e: None)   # [n]

The forward computes ``term(z, y, z_ref)`` chunk by chunk without keeping a graph; the
backward recomputes each chunk's logits and adds the chunk's weight gradient into one
``V x d`` buffer in place (``addmm_``), as fused linear cross-entropy kernels do. Autograd
checkpointing of each chunk gives the same numbers, but allocates a fresh ``V x d`` gradient per
chunk and sums them, which at a 262k vocabulary is 640 MiB per chunk.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

RefChunk = Callable[[int, int], Tensor | None]  # (start, stop) -> reference logits of those positions


def supports(head) -> bool:
    """Whether the fused path applies: a plain ``nn.Linear`` head (others are checkpointed)."""
    return type(head) is nn.Linear


def chunked_head_term(h: Tensor, head: nn.Linear, term, y: Tensor, chunk: int, cap: float | None,
                      ref_chunk: RefChunk) -> Tensor:
    """``term(softcap(head(h[s:e])).float(), y[s:e], ref_chunk(s, e))`` over chunks of ``chunk``
    positions, concatenated -> [n]; differentiable in ``h`` and the head's parameters."""
    return _ChunkedHeadTerm.apply(h, head.weight, head.bias, y, (term, chunk, cap, ref_chunk))


def softcap(a: Tensor, cap: float | None) -> Tensor:
    """The logits the model's forward returns from the head's output ``a`` (Gemma-style final
    soft-capping when ``cap`` is set)."""
    return torch.tanh(a / cap) * cap if cap else a


class _ChunkedHeadTerm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, y, spec):
        term, chunk, cap, ref_chunk = spec
        ctx.spec = spec
        ctx.autocast = (h.device.type, torch.is_autocast_enabled(h.device.type),
                        torch.get_autocast_dtype(h.device.type))
        ctx.save_for_backward(h, weight, bias, y)
        with torch.no_grad():
            parts = [term(softcap(nn.functional.linear(h[s:s + chunk], weight, bias), cap).float(), y[s:s + chunk],
                          ref_chunk(s, s + chunk)) for s in range(0, h.shape[0], chunk)]
        return torch.cat(parts) if parts else h.new_zeros(0, dtype=torch.float32)

    @staticmethod
    def backward(ctx, grad_values):
        h, weight, bias, y = ctx.saved_tensors
        term, chunk, cap, ref_chunk = ctx.spec
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros_like(weight) if need_w else None
        grad_b = torch.zeros_like(bias) if need_b else None
        device, autocast_on, autocast_dtype = ctx.autocast
        for s in range(0, h.shape[0], chunk):
            h_c = h[s:s + chunk].detach()
            with torch.autocast(device, dtype=autocast_dtype, enabled=autocast_on):
                a = nn.functional.linear(h_c, weight, bias)  # backward runs without grad: no graph
                with torch.enable_grad():
                    a.requires_grad_(True)
                    values = term(softcap(a, cap).float(), y[s:s + chunk], ref_chunk(s, s + chunk))
                    (da,) = torch.autograd.grad(values, a, grad_values[s:s + chunk])
            da = da.to(weight.dtype)
            if need_h:
                grad_h[s:s + chunk] = (da @ weight).to(h.dtype)
            if need_w:
                grad_w.addmm_(da.t(), h_c.to(weight.dtype))
            if need_b:
                grad_b.add_(da.sum(0))
        return grad_h, grad_w, grad_b, None, None
