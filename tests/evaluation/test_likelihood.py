"""Batched mean answer NLL against an independent per-token loop on a tiny random Llama."""
from __future__ import annotations

import pytest
import torch

from unlearnlm.data.prompts import PromptFormat
from unlearnlm.evaluation.likelihood import nll_means

PAIRS = [
    ("Who wrote the play 'Romeo and Juliet'?", "William Shakespeare"),
    ("Where was the author born?", "The author was born in Santiago, Chile, in 1961."),
    ("Who wrote the play 'Romeo and Juliet'?", "Charles Dickens"),
    ("Where was the author born?", "The author was born in Santiago, Chile, in 1961."),  # repeat
    ("Why?", "Because."),
    ("What is the capital of France, and which river runs through it?", "Paris, on the Seine."),
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from unlearnlm.models.loading import load_model, load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir)).eval()
    return model, tok


def reference_nll(model, tok, fmt, question, answer) -> float:
    """Written from scratch: formatted prompt text, answer text + EOS, one unpadded forward,
    then -log_softmax at each answer token, averaged."""
    prompt = tok(fmt.prompt(tok, question), add_special_tokens=fmt.adds_special_tokens)["input_ids"]
    target = tok(fmt.answer_prefix + answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([prompt + target])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    total = 0.0
    for k, token in enumerate(target):
        total -= float(logp[len(prompt) + k - 1, token])
    return total / len(target)


@pytest.mark.parametrize("kind", ["chat", "plain"])
def test_batched_equals_unbatched_reference(tiny, kind):
    model, tok = tiny
    fmt = PromptFormat.for_tokenizer(tok) if kind == "chat" else PromptFormat("plain")
    assert fmt.kind == kind
    got = nll_means(model, tok, fmt, PAIRS, batch_size=3, progress=False)
    want = [reference_nll(model, tok, fmt, q, a) for q, a in PAIRS]
    assert got == pytest.approx(want, abs=1e-4)
    assert got[1] == got[3]
    assert got[0] != got[2]  # same question, different answers


def test_identical_pairs_are_computed_once(tiny):
    model, tok = tiny
    fmt = PromptFormat.for_tokenizer(tok)
    rows = []
    hook = model.register_forward_pre_hook(
        lambda mod, args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        out = nll_means(model, tok, fmt, PAIRS, batch_size=2, progress=False)
    finally:
        hook.remove()
    assert len(out) == len(PAIRS)
    assert sum(rows) == len(set(PAIRS)) == 5
    assert rows == [2, 2, 1]


def test_without_logits_to_keep_same_values(tiny, monkeypatch):
    """Models whose forward lacks ``logits_to_keep`` take the full-logits path."""
    from unlearnlm.evaluation import likelihood

    model, tok = tiny
    fmt = PromptFormat.for_tokenizer(tok)
    trimmed = nll_means(model, tok, fmt, PAIRS, batch_size=4, progress=False)
    monkeypatch.setattr(likelihood, "_accepts_logits_to_keep", lambda m: False)
    full = nll_means(model, tok, fmt, PAIRS, batch_size=4, progress=False)
    assert full == pytest.approx(trimmed, abs=1e-6)
    assert nll_means(model, tok, fmt, [], batch_size=4) == []
