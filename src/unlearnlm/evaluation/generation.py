"""Batched greedy decoding of evaluation questions (docs/method.md, section 7, "Generation").

    ids = generate_greedy(model, tokenizer, fmt, questions, max_new_tokens=200, batch_size=16)
    texts = [decode(tokenizer, x) for x in ids]

Prompts are left-padded and sorted longest first, so a batch holds similar lengths and a
memory error shows up on the first batch; results come back in input order. Decoding is
pure greedy (the argmax of the float logits at every step, as ``model.generate`` with
``do_sample=False``): a model's own sampling or repetition-penalty defaults never leak in.
A sequence that reaches a stop token leaves the batch, its rows of the KV cache dropped, so
the remaining steps compute only the unfinished ones (``model.generate`` keeps computing
finished rows until the longest is done). docs/method.md, section 7.
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Iterable, Sequence

import torch

from unlearnlm.data.collate import pad_batch
from unlearnlm.data.prompts import PromptFormat, eos_id, prompt_ids


def autocast(model, bf16: bool):
    """bf16 autocast on the model's device, or a no-op."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(model.device.type, dtype=torch.bfloat16)


def forward_accepts(model, name: str) -> bool:
    """Whether the model's forward takes the keyword ``name``."""
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def cache_kwarg(model) -> str:
    """The forward's name for the KV cache: ``cache`` (transformers >= 5.2x), ``past_key_values`` before."""
    return "cache" if forward_accepts(model, "cache") else "past_key_values"


def stop_ids(model, tokenizer) -> set[int]:
    """The tokenizer's EOS plus every EOS of the model's generation config (end-of-turn tokens)."""
    ids = {eos_id(tokenizer)}
    extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(extra, int):
        ids.add(extra)
    elif extra is not None:
        ids.update(int(i) for i in extra)
    return ids


def trim_at_stop(ids: Iterable[int], stops: set[int]) -> list[int]:
    """Tokens before the first stop token (the stop token excluded)."""
    out = []
    for t in ids:
        if t in stops:
            break
        out.append(int(t))
    return out


def generate_greedy(
    model,
    tokenizer,
    fmt: PromptFormat,
    questions: Sequence[str],
    max_new_tokens: int,
    batch_size: int,
    bf16: bool = False,
    progress: bool = True,
) -> list[list[int]]:
    """Greedy continuation token ids of each formatted question, without the prompt, cut at
    the first EOS (excluded); at most ``max_new_tokens`` each. Identical questions are
    decoded once."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not questions:
        return []
    unique = list(dict.fromkeys(questions))
    prompts = [prompt_ids(tokenizer, fmt, q) for q in unique]
    order = sorted(range(len(unique)), key=lambda i: -len(prompts[i]))
    stops = stop_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id(tokenizer)
    starts = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="generation", unit="batch", leave=False)

    done: dict[int, list[int]] = {}
    with torch.inference_mode(), autocast(model, bf16):
        for s in starts:
            idx = order[s : s + batch_size]
            batch = pad_batch([{"input_ids": prompts[i]} for i in idx], pad_id, side="left")
            out = greedy_batch(model, batch["input_ids"].to(model.device), batch["attention_mask"].to(model.device),
                               int(max_new_tokens), stops)
            for i, row in zip(idx, out):
                done[i] = trim_at_stop(row, stops)
    by_question = {q: done[i] for i, q in enumerate(unique)}
    return [list(by_question[q]) for q in questions]


def greedy_batch(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
                 stops: set[int]) -> list[list[int]]:
    """Greedy continuations of a left-padded batch [B,T], each up to and including its first stop
    token (at most ``max_new_tokens``). Finished rows leave the batch and the KV cache."""
    from transformers import DynamicCache

    n = input_ids.shape[0]
    out: list[list[int]] = [[] for _ in range(n)]
    if max_new_tokens < 1:
        return out
    alive = torch.arange(n)
    mask = attention_mask.long()
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)  # as model.generate
    cache = DynamicCache(config=model.config)
    kv = {cache_kwarg(model): cache}  # the forward's signature is read once, not at every token
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                   logits_to_keep=1, **kv).logits[:, -1]
    positions = positions[:, -1:]
    stop = torch.tensor(sorted(stops), device=input_ids.device)
    for step in range(max_new_tokens):
        token = logits.float().argmax(-1)
        for i, t in zip(alive.tolist(), token.tolist()):
            out[i].append(t)
        keep = (~torch.isin(token, stop)).nonzero().squeeze(1)
        if step == max_new_tokens - 1 or keep.numel() == 0:
            break
        if keep.numel() < alive.numel():  # drop finished sequences from the batch and the cache
            cache.batch_select_indices(keep)
            alive, token, mask, positions = alive[keep.cpu()], token[keep], mask[keep], positions[keep]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        positions = positions + 1
        logits = model(input_ids=token[:, None], attention_mask=mask, position_ids=positions, use_cache=True,
                       **kv).logits[:, -1]
    return out


def decode(tokenizer, ids: Sequence[int]) -> str:
    """Text of generated ids, special tokens dropped, surrounding whitespace stripped."""
    return tokenizer.decode(list(ids), skip_special_tokens=True).strip()
