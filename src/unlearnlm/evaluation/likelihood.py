"""Answer likelihoods given the question, in batches: mean NLL (probability, truth ratio), per-token
statistics and gradient norms (the membership-inference and memorisation metrics).

    nll = nll_means(model, tokenizer, fmt, [("Who wrote X?", "Jane Doe.")], batch_size=16)
    p = math.exp(-nll[0])

The targets are exactly the training labels: the answer tokens followed by EOS
(``prompts.answer_ids``) after the formatted question (``prompts.prompt_ids``). Identical
(question, answer) pairs are computed once. Batches are right-padded and sorted longest
first; only the logits the answers need are kept, and only answer positions are
converted to float32, 64 rows at a time, so a 262k vocabulary fits in memory.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from unlearnlm.data.collate import pad_batch
from unlearnlm.data.prompts import IGNORE, PromptFormat, answer_ids, eos_id, prompt_ids
from unlearnlm.evaluation.generation import autocast, cache_kwarg, forward_accepts


def _accepts_logits_to_keep(model) -> bool:
    return forward_accepts(model, "logits_to_keep")


class AnswerLogits(NamedTuple):
    """The logits of one batch (B x K x V) and which of them are answer positions: ``where``
    (batch row, position) of each, ``targets`` the token each predicts. The answer rows are
    read a chunk at a time (``chunks``), so no N x V copy of them is ever made."""

    logits: torch.Tensor
    where: tuple[torch.Tensor, torch.Tensor]
    targets: torch.Tensor

    @property
    def rows(self) -> torch.Tensor:
        """The batch row (example) of every answer position."""
        return self.where[0]

    def chunks(self, size: int):
        """(first index, float32 logits of answer positions first .. first+size-1), in order."""
        b, t = self.where
        for c in range(0, len(b), size):
            yield c, self.logits[b[c : c + size], t[c : c + size]].float()


def _answer_logits(model, features: list[dict], pad_id: int, trim: bool) -> AnswerLogits:
    """The answer logits of one right-padded batch (one forward)."""
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
    return AnswerLogits(logits, keep.nonzero(as_tuple=True), targets[keep])


def _nll_from(answer: AnswerLogits, n: int, chunk: int = 64) -> list[float]:
    """Mean NLL over the labelled tokens of each of ``n`` examples: logsumexp(z) - z[target] per
    token, ``chunk`` rows at a time. No float32 copy of all the answer logits and no N x V
    log-softmax is made, as cross_entropy would; 64-row chunks stay in cache (2.5x faster than
    cross_entropy on a 49k vocabulary, docs/benchmarks.md)."""
    y = answer.targets
    per_token = [torch.logsumexp(z, dim=-1) - z.gather(-1, y[c : c + len(z), None])[:, 0]
                 for c, z in answer.chunks(chunk)]
    return example_means(torch.cat(per_token) if per_token else y.new_zeros(0, dtype=torch.float32), answer.rows, n)


def example_means(per_token: torch.Tensor, rows: torch.Tensor, n: int) -> list[float]:
    """Mean of the per-token values of each of ``n`` examples (``rows``: the example of each), in float64."""
    sums = torch.zeros(n, dtype=torch.float64, device=per_token.device).index_add_(0, rows, per_token.double())
    return (sums / torch.bincount(rows, minlength=n).double()).tolist()


def _stats_from(answer: AnswerLogits, n: int, chunk: int = 64) -> list[dict]:
    """Per answer token of each of ``n`` examples: log p(y_t), the mean and standard deviation
    of log p under p_t itself (Min-K%++), and whether y_t is the argmax (memorisation)."""
    parts = []
    for c, z in answer.chunks(chunk):  # small chunks: in cache, and a 262k vocabulary fits in memory
        logp = torch.log_softmax(z, dim=-1)
        p = logp.exp()
        mu = (p * logp).sum(-1)
        var = (p * (logp - mu[:, None]).square()).sum(-1)  # two-pass: E[x^2] - mu^2 cancels on flat p
        y = answer.targets[c : c + len(z)]
        parts.append(torch.stack([logp.gather(-1, y[:, None])[:, 0], mu, var.sqrt(),
                                  (logp.argmax(-1) == y).float()], dim=1))
    table = torch.cat(parts).double().cpu() if parts else torch.zeros(0, 4, dtype=torch.float64)
    rows = answer.rows.cpu()
    out = []
    for i in range(n):
        mine = table[rows == i]
        out.append({"logp": mine[:, 0].tolist(), "mu": mine[:, 1].tolist(), "sigma": mine[:, 2].tolist(),
                    "hit": [bool(h) for h in mine[:, 3].tolist()]})
    return out


def shared_prompt_logits(model, prompt: list[int], answers: list[list[int]], pad_id: int, trim: bool) -> AnswerLogits:
    """What ``_answer_logits`` returns for one prompt and several answers (each ending in EOS),
    the prompt computed once: one forward of the prompt, its KV cache repeated for every
    answer, one forward of the right-padded answers on it."""
    device, k = model.device, len(answers)
    out = model(input_ids=torch.tensor([prompt], device=device), use_cache=True,
                **({"logits_to_keep": 1} if trim else {}))
    first = out.logits[:, -1:].expand(k, -1, -1)  # each answer's first token, from the prompt's last position
    name = cache_kwarg(model)
    width = max(map(len, answers))
    ids = torch.tensor([a + [pad_id] * (width - len(a)) for a in answers], device=device)
    mask = torch.tensor([[1] * len(a) + [0] * (width - len(a)) for a in answers], device=device)
    logits = first
    if width > 1:  # the answers' own positions predict their following tokens
        cache = getattr(out, name)
        cache.batch_repeat_interleave(k)
        seen = torch.cat([torch.ones(k, len(prompt), dtype=mask.dtype, device=device), mask[:, :-1]], dim=1)
        rest = model(input_ids=ids[:, :-1], attention_mask=seen, use_cache=True, **{name: cache}).logits
        logits = torch.cat([first, rest], dim=1)  # k x width x V
    keep = mask.bool()
    return AnswerLogits(logits, keep.nonzero(as_tuple=True), ids[keep])


def _jobs(unique: list[tuple[str, str]], features: list[dict], batch_size: int, share_prompts: bool):
    """Work units over the unique pairs: ("shared", [indices of one question's answers]) for a
    question asked with several answers (``share_prompts``), ("batch", [indices]) for the rest,
    in length-sorted batches of ``batch_size``, longest first."""
    by_question: dict[str, list[int]] = {}
    for i, (q, _) in enumerate(unique):
        by_question.setdefault(q, []).append(i)
    groups = [idx for idx in by_question.values() if share_prompts and len(idx) > 1]
    grouped = {i for idx in groups for i in idx}
    rest = sorted((i for i in range(len(unique)) if i not in grouped), key=lambda i: -len(features[i]["input_ids"]))
    return [("shared", idx) for idx in groups] + [("batch", rest[s : s + batch_size])
                                                  for s in range(0, len(rest), batch_size)]


def _per_pair(model, tokenizer, fmt: PromptFormat, pairs, batch_size: int, bf16: bool, progress: bool,
              reduce, desc: str, share_prompts: bool = True) -> list:
    """``reduce`` of the answer logits of the unique (question, answer) pairs; results in input
    order. Answers to one question share one prompt forward (``shared_prompt_logits``) unless
    ``share_prompts`` is false (then every pair is a sequence of its own, as before)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not pairs:
        return []
    unique = list(dict.fromkeys((str(q), str(a)) for q, a in pairs))
    prompts = {q: prompt_ids(tokenizer, fmt, q) for q in dict.fromkeys(q for q, _ in unique)}
    answers = [answer_ids(tokenizer, fmt, a) for _, a in unique]
    features = [{"input_ids": prompts[q] + t, "labels": [IGNORE] * len(prompts[q]) + t}
                for (q, _), t in zip(unique, answers)]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id(tokenizer)
    trim = _accepts_logits_to_keep(model)
    jobs = _jobs(unique, features, batch_size, share_prompts)
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc=desc, unit="batch", leave=False)
    values: list = [None] * len(unique)
    with torch.inference_mode(), autocast(model, bf16):
        for kind, idx in jobs:
            if kind == "shared":
                scored = shared_prompt_logits(model, prompts[unique[idx[0]][0]], [answers[i] for i in idx], pad_id, trim)
            else:
                scored = _answer_logits(model, [features[i] for i in idx], pad_id, trim)
            for i, v in zip(idx, reduce(scored, len(idx))):
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
    share_prompts: bool = True,
) -> list[float]:
    """NLL_mean(answer | question) per (question, answer) pair, in input order (nats/token)."""
    return _per_pair(model, tokenizer, fmt, pairs, batch_size, bf16, progress, _nll_from, "likelihood",
                     share_prompts)


def answer_token_stats(model, tokenizer, fmt: PromptFormat, pairs: Sequence[tuple[str, str]], batch_size: int,
                       bf16: bool = False, progress: bool = True, share_prompts: bool = True) -> list[dict]:
    """Per pair, per answer token (EOS last): {"logp", "mu", "sigma", "hit"} (teacher forcing)."""
    return _per_pair(model, tokenizer, fmt, pairs, batch_size, bf16, progress, _stats_from, "token stats",
                     share_prompts)


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
            scored = _answer_logits(model, [feature], pad_id, trim)
            loss = F.cross_entropy(scored.logits[scored.where].float(), scored.targets)
            out.append(mean_grad_norm(loss, params))
    finally:
        for p, flag in zip(params, trainable):
            p.requires_grad_(flag)
    return out
