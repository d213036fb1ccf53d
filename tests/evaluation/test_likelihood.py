"""Batched mean answer NLL against an independent per-token loop on a tiny random Llama."""
from __future__ import annotations

import pytest
import torch

from unlearnlm.data.prompts import PromptFormat
from unlearnlm.evaluation.likelihood import answer_token_stats, nll_means

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
        out = nll_means(model, tok, fmt, PAIRS, batch_size=2, progress=False, share_prompts=False)
        assert sum(rows) == len(set(PAIRS)) == 5
        rows.clear()
        nll_means(model, tok, fmt, PAIRS, batch_size=2, progress=False)
        # "Who wrote ...?" is asked with two answers: its prompt once (1 row), then its two
        # answers on the prompt's cache (2 rows); the three other pairs in batches of 2 and 1
        assert rows == [1, 2, 2, 1]
    finally:
        hook.remove()
    assert len(out) == len(PAIRS)


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


def _gemma3_tiny(tok):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=8,
                              max_position_embeddings=256, pad_token_id=tok.pad_token_id)
    return Gemma3ForCausalLM(config).eval()


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_shared_prompts_give_the_same_likelihoods_and_token_stats(tiny, family):
    """One prompt forward whose KV cache every answer reuses = each (prompt + answer) on its own
    (Gemma-3: a sliding window of 8 tokens, shorter than prompt + answer)."""
    model, tok = tiny
    if family == "gemma3":
        model = _gemma3_tiny(tok)
    fmt = PromptFormat.for_tokenizer(tok)
    pairs = PAIRS + [("Why?", "Because I said so, and that is the end of it."), ("Why?", "No.")]
    shared = nll_means(model, tok, fmt, pairs, batch_size=3, progress=False)
    alone = nll_means(model, tok, fmt, pairs, batch_size=3, progress=False, share_prompts=False)
    assert shared == pytest.approx(alone, abs=1e-5)
    a = answer_token_stats(model, tok, fmt, pairs, batch_size=3, progress=False)
    b = answer_token_stats(model, tok, fmt, pairs, batch_size=3, progress=False, share_prompts=False)
    for x, y in zip(a, b):
        assert x["hit"] == y["hit"]
        for key in ("logp", "mu", "sigma"):  # float32 reassociation; sigma's E[x^2] - mu^2 cancels
            assert x[key] == pytest.approx(y[key], abs=1e-4)


@pytest.mark.parametrize("chunk, dtype, tol", [(1, torch.float32, 1e-6), (2, torch.float32, 1e-6),
                                               (256, torch.float32, 1e-6), (2, torch.bfloat16, 2e-2)])
def test_nll_from_matches_hand_arithmetic_at_every_chunk_size(chunk, dtype, tol):
    """Two examples on a 3-token vocabulary. Logits (0, 0, 0) give every token p = 1/3;
    (0, ln 2, ln 5) give p = 1/8, 2/8, 5/8. Example 0 predicts token 1 under the first, then
    token 2 under the second: mean NLL (ln 3 + ln 8/5) / 2. Example 1 predicts token 0 under
    the second: ln 8; its second position is padding (junk logits, not read)."""
    import math

    from unlearnlm.evaluation.likelihood import AnswerLogits, _nll_from

    flat, skewed = [0.0, 0.0, 0.0], [0.0, math.log(2), math.log(5)]
    logits = torch.tensor([[flat, skewed], [skewed, [9.0, -9.0, 3.0]]], dtype=dtype)
    where = (torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0]))
    got = _nll_from(AnswerLogits(logits, where, torch.tensor([1, 2, 0])), 2, chunk=chunk)
    want = [(math.log(3) + math.log(8 / 5)) / 2, math.log(8)]
    # tol: bf16 stores ln 2 and ln 5 to about 3 significant digits
    assert got == pytest.approx(want, abs=tol)
