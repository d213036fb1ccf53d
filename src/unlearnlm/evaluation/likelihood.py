"""Answer likelihoods given the question, in batches: mean NLL (probability, truth ratio), per-token
statistics and gradient norms (the membership-inference and memorisation metrics).

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


def _answer_logits(model, features: list[dict], pad_id: int, trim: bool):
    """(logits at answer positions N x V, their target tokens N, example index of each) of one
    right-padded batch (one forward)."""
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
    return logits[keep], targets[keep], keep.nonzero()[:, 0]


def _batch_nll(model, features: list[dict], pad_id: int, trim: bool) -> list[float]:
    """Mean NLL over the labelled tokens of each feature (one forward)."""
    logits, targets, rows = _answer_logits(model, features, pad_id, trim)
    token_nll = F.cross_entropy(logits.float(), targets, reduction="none")  # N
    sums = torch.zeros(len(features), dtype=torch.float64, device=token_nll.device)
    sums.index_add_(0, rows, token_nll.double())
    counts = torch.bincount(rows, minlength=len(features)).double()
    return (sums / counts).tolist()


def _batch_token_stats(model, features: list[dict], pad_id: int, trim: bool, chunk: int = 512) -> list[dict]:
    """Per answer token of each feature: log p(y_t), the mean and standard deviation of log p
    under p_t itself (Min-K%++), and whether y_t is the argmax (memorisation)."""
    logits, targets, rows = _answer_logits(model, features, pad_id, trim)
    parts = []
    for c in range(0, len(targets), chunk):  # a 262k vocabulary stays within memory
        logp = torch.log_softmax(logits[c : c + chunk].float(), dim=-1)
        p = logp.exp()
        mu = (p * logp).sum(-1)
        var = ((p * logp * logp).sum(-1) - mu * mu).clamp_min(0.0)
        y = targets[c : c + chunk]
        parts.append(torch.stack([logp.gather(-1, y[:, None])[:, 0], mu, var.sqrt(),
                                  (logp.argmax(-1) == y).float()], dim=1))
    table = torch.cat(parts).double().cpu()
    rows = rows.cpu()
    out = []
    for i in range(len(features)):
        mine = table[rows == i]
        out.append({"logp": mine[:, 0].tolist(), "mu": mine[:, 1].tolist(), "sigma": mine[:, 2].tolist(),
                    "hit": [bool(h) for h in mine[:, 3].tolist()]})
    return out


def _per_pair(model, tokenizer, fmt: PromptFormat, pairs, batch_size: int, bf16: bool, progress: bool,
              batch_fn, desc: str) -> list:
    """``batch_fn`` over the unique (question, answer) pairs, longest first; results in input order."""
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

        starts = tqdm(starts, desc=desc, unit="batch", leave=False)
    values: list = [None] * len(unique)
    with torch.inference_mode(), autocast(model, bf16):
        for s in starts:
            idx = order[s : s + batch_size]
            for i, v in zip(idx, batch_fn(model, [features[i] for i in idx], pad_id, trim)):
                values[i] = v
    by_pair = dict(zip(unique, values))
    return [by_pair[(str(q), str(a))] for q, a in pairs]


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
    return _per_pair(model, tokenizer, fmt, pairs, batch_size, bf16, progress, _batch_nll, "likelihood")


def answer_token_stats(model, tokenizer, fmt: PromptFormat, pairs: Sequence[tuple[str, str]], batch_size: int,
                       bf16: bool = False, progress: bool = True) -> list[dict]:
    """Per pair, per answer token (EOS last): {"logp", "mu", "sigma", "hit"} (teacher forcing)."""
    return _per_pair(model, tokenizer, fmt, pairs, batch_size, bf16, progress, _batch_token_stats, "token stats")


def mean_grad_norm(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> float:
    """Mean over the parameter tensors of the L2 norm of d loss / d W (GradNorm's score);
    a tensor the loss does not reach counts as a zero gradient."""
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    norms = [0.0 if g is None else float(g.double().norm()) for g in grads]
    return sum(norms) / len(norms)


def answer_grad_norms(model, tokenizer, fmt: PromptFormat, pairs: Sequence[tuple[str, str]],
                      progress: bool = True) -> list[float]:
    """Per pair: ``mean_grad_norm`` of the mean answer NLL (EOS included), one example at a
    time in float32. The model's parameters are left as they were (no update, no .grad)."""
    params = list(model.parameters())
    trainable = [p.requires_grad for p in params]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id(tokenizer)
    trim = _accepts_logits_to_keep(model)
    items = pairs
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(pairs, desc="gradient norms", unit="example", leave=False)
    out = []
    try:
        for p in params:
            p.requires_grad_(True)
        for q, a in items:
            prompt, answer = prompt_ids(tokenizer, fmt, str(q)), answer_ids(tokenizer, fmt, str(a))
            feature = {"input_ids": prompt + answer, "labels": [IGNORE] * len(prompt) + answer}
            logits, targets, _ = _answer_logits(model, [feature], pad_id, trim)
            out.append(mean_grad_norm(F.cross_entropy(logits.float(), targets), params))
    finally:
        for p, flag in zip(params, trainable):
            p.requires_grad_(flag)
    return out
