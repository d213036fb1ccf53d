"""The output head and a per-position loss term over chunks of positions, with the head's weight
gradient accumulated in place (the idea of Liger Kernel's fused linear cross-entropy, in plain
torch; docs/method.md, section 5).

    values = head_term(h, weight, term, y, z_ref_fn, cap, chunk)   # [N]; autograd through h and weight

Forward: z = h_c W^T (soft-capped when ``cap``), ``term(z.float(), y_c, z_ref_c)`` per chunk of
``chunk`` positions, nothing kept but h. Backward: each chunk's logits are recomputed, the term's
gradient dz is taken with autograd on z alone, then dh_c = dz W and dW += dz^T h_c in place, so
the [V, d] weight gradient exists once, not once per chunk.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def _logits(h: Tensor, weight: Tensor, cap: float | None) -> Tensor:
    z = h @ weight.t()
    return torch.tanh(z / cap) * cap if cap else z


class _HeadTerm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, term, y, z_ref_fn, cap, chunk, autocast_state):
        device_type, dtype, enabled = autocast_state
        parts = []
        with torch.no_grad(), torch.autocast(device_type, dtype=dtype, enabled=enabled):
            for s in range(0, h.shape[0], chunk):
                parts.append(term(_logits(h[s:s + chunk], weight, cap).float(), y[s:s + chunk],
                                  z_ref_fn(s, s + chunk)))
        ctx.save_for_backward(h, weight)
        ctx.rest = (term, y, z_ref_fn, cap, chunk, autocast_state)
        return torch.cat(parts) if parts else h.new_zeros(0, dtype=torch.float32)

    @staticmethod
    def backward(ctx, grad):
        h, weight = ctx.saved_tensors
        term, y, z_ref_fn, cap, chunk, (device_type, dtype, enabled) = ctx.rest
        dh = torch.empty_like(h)
        dw = torch.zeros_like(weight, dtype=torch.float32)
        for s in range(0, h.shape[0], chunk):
            h_c = h[s:s + chunk]
            with torch.enable_grad(), torch.autocast(device_type, dtype=dtype, enabled=enabled):
                z = (h_c.detach() @ weight.detach().t()).requires_grad_()
                capped = torch.tanh(z / cap) * cap if cap else z
                values = term(capped.float(), y[s:s + chunk], z_ref_fn(s, s + chunk))
                (dz,) = torch.autograd.grad(values, z, grad[s:s + chunk])
            dh[s:s + chunk] = (dz @ weight.to(dz.dtype)).to(dh.dtype)
            dw.addmm_(dz.t().float(), h_c.float())
        return dh, dw.to(weight.dtype), None, None, None, None, None, None


def head_term(h: Tensor, weight: Tensor, term: Callable, y: Tensor, z_ref_fn: Callable, cap: float | None,
              chunk: int) -> Tensor:
    """``term`` at every row of ``h`` [N, d] through the head ``weight`` [V, d] (see the module doc).
    ``z_ref_fn(start, stop)`` gives the reference logits of those rows, or None."""
    device_type = h.device.type
    state = (device_type, torch.get_autocast_dtype(device_type), torch.is_autocast_enabled(device_type))
    return _HeadTerm.apply(h, weight, term, y, z_ref_fn, cap, chunk, state)
