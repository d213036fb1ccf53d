"""Quantisation attack: weight-only, round-to-nearest, groupwise (docs/method.md, section 9).

    n = quantize_weights(model, bits=4, group_size=64)   # every decoder Linear, in place

torchao (``IntxWeightOnlyConfig``, symmetric int<bits> per group of ``group_size`` input
weights, one scale per group) quantises each ``nn.Linear`` weight; the quantised weight is then
written back as its dequantised float value, so the saved folder is a plain Hugging Face model
that any tool loads and that computes exactly what a weight-only int<bits> kernel computes (up
to accumulation order). The output head stays in float, as in GPTQ and AWQ (it is also tied to
the input embeddings in SmolLM2 and Gemma).
"""
from __future__ import annotations

import os
import shutil
import time
from importlib.metadata import version
from pathlib import Path

import torch

from unlearnlm.errors import ConfigError
from unlearnlm.io import write_json
from unlearnlm.training.layout import ModelFolder
from unlearnlm.utils import log

KEEP_FLOAT = ("lm_head",)


def _torchao():
    import torchao.quantization as q  # its import-time noise is silenced in unlearnlm/__init__.py
    from torchao.quantization.granularity import PerGroup

    return q, PerGroup


def quantizable(module: torch.nn.Module, name: str, group_size: int) -> bool:
    """A Linear outside KEEP_FLOAT whose input size is a multiple of ``group_size``."""
    return isinstance(module, torch.nn.Linear) and not any(k in name for k in KEEP_FLOAT) \
        and module.in_features % group_size == 0


def quantize_weights(model: torch.nn.Module, bits: int, group_size: int) -> int:
    """Quantise every quantizable Linear weight of ``model`` to ``bits`` (symmetric, per group
    of ``group_size``), in place, leaving dequantised float weights; -> how many were quantised."""
    if not 2 <= bits <= 8:
        raise ConfigError(f"eval.attack: quantisation to {bits} bits; torchao's weight-only RTN supports 2 to 8")
    q, PerGroup = _torchao()
    names = {id(m): n for n, m in model.named_modules()}
    dtypes = {n: m.weight.dtype for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    config = q.IntxWeightOnlyConfig(weight_dtype=getattr(torch, f"int{bits}"), granularity=PerGroup(group_size),
                                    mapping_type=q.MappingType.SYMMETRIC)
    q.quantize_(model, config, filter_fn=lambda m, fqn: quantizable(m, fqn, group_size))
    count = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, torch.nn.Linear) and hasattr(weight, "dequantize") and type(weight) is not torch.nn.Parameter:
            dense = weight.dequantize().to(dtypes[names[id(module)]])
            module.weight = torch.nn.Parameter(dense.detach().clone(), requires_grad=False)
            count += 1
    if count == 0:
        raise ConfigError(f"eval.attack.quant_group_size: {group_size} divides the input size of no Linear layer")
    return count


def _save_quantized(ctx, model_dir: Path, out_dir: Path, bits: int) -> None:
    """``model_dir`` quantised to ``bits`` and saved as a plain HF folder (atomic; manifest last)."""
    from unlearnlm.models.compat import add_legacy_keys
    from unlearnlm.models.loading import load_model, load_tokenizer

    folder = ModelFolder(out_dir)
    if folder.is_done:
        return
    start = time.time()
    model = load_model(str(model_dir), ctx.cfg.model.trust_remote_code)
    n = quantize_weights(model, bits, ctx.settings.quant_group_size)
    if folder.tmp.exists():
        shutil.rmtree(folder.tmp)
    model.save_pretrained(folder.tmp, safe_serialization=True)
    load_tokenizer(str(model_dir), ctx.cfg.model.trust_remote_code).save_pretrained(folder.tmp)
    add_legacy_keys(folder.tmp)
    write_json(ModelFolder(folder.tmp).manifest, {
        "kind": f"attack-quant{bits}", "attacked_model": str(model_dir), "bits": bits,
        "group_size": ctx.settings.quant_group_size, "scheme": "symmetric round-to-nearest, weight-only",
        "library": f"torchao {version('torchao')}", "quantised_linear_layers": n, "kept_float": list(KEEP_FLOAT),
        "seconds": round(time.time() - start, 1),
    })
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(folder.tmp, out_dir)
    log(f"[attack] quant{bits}: {n} Linear layers of {model_dir} in {time.time() - start:.1f}s")


def quant8(ctx, model_dir: Path, out_dir: Path) -> None:
    """Weights of every decoder Linear layer quantised to 8 bits."""
    _save_quantized(ctx, model_dir, out_dir, 8)


def quant4(ctx, model_dir: Path, out_dir: Path) -> None:
    """Weights of every decoder Linear layer quantised to 4 bits."""
    _save_quantized(ctx, model_dir, out_dir, 4)
