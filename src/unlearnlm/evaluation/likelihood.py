"""Mean answer NLL given the question, in batches (probability and truth ratio).

    nll = nll_means(model, tokenizer, fmt, [("Who wrote X?", "Jane Doe.")], batch_size=16)
    p = math.exp(-nll[0])

The targets are exactly the training labels: the answer tokens followed by EOS
(``prompts.answer_ids``) after the formatted question (``prompts.prompt_ids``). Identical
(question, answer) pairs are computed once. Batches are right-padded and sorted longest
first; only the logits the answers need are kept, and only answer positions are
converted to float32 for the log-softmax, so a 262k vocabulary fits in memory.
"""
from __future__ import annotations

import inspect
from typing import Sequence

import torch
import torch.nn.functional as F

from unlearnlm.data.collate import pad_batch
from unlearnlm.data.prompts import IGNORE, PromptFormat, answer_ids, eos_id, prompt_ids
from unlearnlm.evaluation.generation import autocast


def _accepts_logits_to_keep(model) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _batch_nll(model, features: list[dict], pad_id: int, trim: bool) -> list[float]:
    """Mean NLL over the labelled tokens of each feature (one forward)."""
    batch = pad_batch(features, pad_id, side="right")
    ids, mask, labels = (batch[k].to(model.device) for k in ("input_ids", "attention_mask", "labels"))
    width = ids.shape[1]
    # Logit at position t predicts token t+1: the first one needed is just before the
    # earliest answer token of the batch.
    start = min(len(f["input_ids"]) - sum(l != IGNORE for l in f["labels"]) for f in features) - 1
    kwargs = {"logits_to_keep": width - start} if trim else {}
    logits = model(input_ids=ids, attention_mask=mask, **kwargs).logits  # B x K x V
    if not trim:
        logits = logits[:, start:]
    logits = logits[:, :-1]  # positions start .. width-2
    targets = labels[:, start + 1 :]  # tokens start+1 .. width-1
    keep = targets != IGNORE  # B x (K-1)
    token_nll = F.cross_entropy(logits[keep].float(), targets[keep], reduction="none")  # N
    rows = keep.nonzero()[:, 0]
    sums = torch.zeros(len(features), dtype=torch.float64, device=token_nll.device)
    sums.index_add_(0, rows, token_nll.double())
    counts = keep.sum(dim=1).double()
    return (sums / counts).tolist()


def nll_means(
    model,
    tokenizer,
    fmt: PromptFormat,
    pairs: Sequence[tuple[str, str]],
    batch_size: int,
    bf16: bool = False,
    progress: bool = True,
) -> list[float]:
    """NLL_mean(answer | question) per (question, answer) pair, in input order (nats/token)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not pairs:
        return []
    unique = list(dict.fromkeys((str(q), str(a)) for q, a in pairs))
    features = []
    for q, a in unique:
        p, t = prompt_ids(tokenizer, fmt, q), answer_ids(tokenizer, fmt, a)
        features.append({"input_ids": p + t, "labels": [IGNORE] * len(p) + t})
    order = sorted(range(len(unique)), key=lambda i: -len(features[i]["input_ids"]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id(tokenizer)
    trim = _accepts_logits_to_keep(model)

    starts = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="likelihood", unit="batch", leave=False)
    values: list[float] = [0.0] * len(unique)
    with torch.inference_mode(), autocast(model, bf16):
        for s in starts:
            idx = order[s : s + batch_size]
            for i, v in zip(idx, _batch_nll(model, [features[i] for i in idx], pad_id, trim)):
                values[i] = v
    by_pair = dict(zip(unique, values))
    return [by_pair[(str(q), str(a))] for q, a in pairs]
