"""Batched greedy decoding of evaluation questions (docs/method.md, section 7, "Generation").

    ids = generate_greedy(model, tokenizer, fmt, questions, max_new_tokens=200, batch_size=16)
    texts = [decode(tokenizer, x) for x in ids]

Prompts are left-padded and sorted longest first, so a batch holds similar lengths and a
memory error shows up on the first batch; results come back in input order. Decoding is
pure greedy with a fresh generation config: a model's own sampling or repetition-penalty
defaults never leak in.
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Sequence

import torch

from unlearnlm.data.collate import pad_batch
from unlearnlm.data.prompts import PromptFormat, eos_id, prompt_ids


def autocast(model, bf16: bool):
    """bf16 autocast on the model's device, or a no-op."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(model.device.type, dtype=torch.bfloat16)


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
    from transformers import GenerationConfig

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not questions:
        return []
    unique = list(dict.fromkeys(questions))
    prompts = [prompt_ids(tokenizer, fmt, q) for q in unique]
    order = sorted(range(len(unique)), key=lambda i: -len(prompts[i]))
    stops = stop_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id(tokenizer)
    config = GenerationConfig(
        max_new_tokens=int(max_new_tokens),
        do_sample=False,
        num_beams=1,
        use_cache=True,
        pad_token_id=pad_id,
        eos_token_id=sorted(stops),
    )
    starts = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="generation", unit="batch", leave=False)

    done: dict[int, list[int]] = {}
    with torch.inference_mode(), autocast(model, bf16):
        for s in starts:
            idx = order[s : s + batch_size]
            batch = pad_batch([{"input_ids": prompts[i]} for i in idx], pad_id, side="left")
            width = batch["input_ids"].shape[1]
            out = model.generate(
                input_ids=batch["input_ids"].to(model.device),
                attention_mask=batch["attention_mask"].to(model.device),
                generation_config=config,
            )
            for i, row in zip(idx, out[:, width:].tolist()):
                done[i] = trim_at_stop(row, stops)
    by_question = {q: done[i] for i, q in enumerate(unique)}
    return [list(by_question[q]) for q in questions]


def decode(tokenizer, ids: Sequence[int]) -> str:
    """Text of generated ids, special tokens dropped, surrounding whitespace stripped."""
    return tokenizer.decode(list(ids), skip_special_tokens=True).strip()
