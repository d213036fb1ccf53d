"""Batched greedy decoding against one-at-a-time decoding on a tiny random Llama."""
from __future__ import annotations

import pytest
import torch

from unlearnlm.data.prompts import PromptFormat, prompt_ids
from unlearnlm.evaluation.generation import decode, generate_greedy, stop_ids, trim_at_stop

QUESTIONS = [
    "Who wrote the play 'Romeo and Juliet'?",
    "Where was the author born?",
    "What is the capital of France, and which river runs through it?",
    "Who wrote the play 'Romeo and Juliet'?",  # duplicate: same ids, decoded once
    "Why?",
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from unlearnlm.models.loading import load_model, load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir)).eval()
    return model, tok, PromptFormat.for_tokenizer(tok)


def test_trim_at_stop_cuts_before_first_stop():
    assert trim_at_stop([5, 6, 2, 7, 2], {2}) == [5, 6]
    assert trim_at_stop([5, 6], {2}) == [5, 6]
    assert trim_at_stop([3, 5], {2, 3}) == []


def test_batched_left_padded_equals_one_at_a_time(tiny):
    model, tok, fmt = tiny
    lengths = {len(prompt_ids(tok, fmt, q)) for q in QUESTIONS}
    assert len(lengths) >= 3  # the batches really are padded
    batched = generate_greedy(model, tok, fmt, QUESTIONS, max_new_tokens=6, batch_size=3, progress=False)
    single = [generate_greedy(model, tok, fmt, [q], 6, 1, progress=False)[0] for q in QUESTIONS]
    assert batched == single
    stops = stop_ids(model, tok)
    for ids in batched:
        assert len(ids) <= 6 and not stops & set(ids)
    assert batched[0] == batched[3]


def test_matches_a_plain_token_by_token_greedy_loop(tiny):
    """Reference: argmax of the full forward at each step, no cache, no padding."""
    model, tok, fmt = tiny
    q = QUESTIONS[2]
    ids = prompt_ids(tok, fmt, q)
    stops = stop_ids(model, tok)
    expected = []
    with torch.no_grad():
        for _ in range(5):
            nxt = int(model(torch.tensor([ids + expected])).logits[0, -1].argmax())
            if nxt in stops:
                break
            expected.append(nxt)
    assert generate_greedy(model, tok, fmt, [q], 5, 4, progress=False) == [expected]


def test_bf16_autocast_runs(tiny):
    model, tok, fmt = tiny
    out = generate_greedy(model, tok, fmt, QUESTIONS[:2], 3, 2, bf16=True, progress=False)
    assert len(out) == 2 and all(len(x) <= 3 for x in out)


def test_decode_skips_special_tokens_and_strips(tiny):
    _, tok, _ = tiny
    ids = tok(" Hello world ", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert decode(tok, ids) == "Hello world"
    assert generate_greedy(None, tok, PromptFormat("plain"), [], 4, 2) == []


def _hf_generate(model, ids, mask, max_new_tokens, stops):
    """transformers' own greedy decoding, each row cut after its first stop token."""
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, use_cache=True,
                              pad_token_id=0, eos_token_id=sorted(stops))
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)[:, ids.shape[1]:]
    rows = []
    for row in out.tolist():
        cut = next((i for i, t in enumerate(row) if t in stops), len(row) - 1)
        rows.append(row[: cut + 1])
    return rows


def _gemma3():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=128,
                              sliding_window=4, final_logit_softcapping=5.0, initializer_range=0.3)
    return Gemma3ForCausalLM(config).eval()


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_greedy_batch_equals_transformers_generate_when_rows_stop_early(family, tiny):
    """Rows that stop leave the batch and the KV cache; the others continue exactly as in
    model.generate (Gemma-3: sliding-window layers and soft-capping too)."""
    from unlearnlm.evaluation.generation import greedy_batch

    model = tiny[0] if family == "llama" else _gemma3()
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 250, (5, 9), generator=g)
    mask = torch.ones_like(ids)
    for row, pad in enumerate([0, 2, 5, 1, 3]):  # left padding of different widths
        ids[row, :pad], mask[row, :pad] = 0, 0
    free = _hf_generate(model, ids, mask, 10, {299})  # the tokens without early stops
    # stop on tokens that occur part-way through some rows, so rows finish at different steps
    stops = {free[0][3], free[2][6]}
    want = _hf_generate(model, ids, mask, 10, stops)
    lengths = [len(r) for r in want]
    assert min(lengths) < max(lengths) == 10  # some rows really stopped early, one ran to the limit
    with torch.no_grad():
        assert greedy_batch(model, ids, mask, 10, stops) == want
        assert greedy_batch(model, ids, mask, 1, stops) == [r[:1] for r in want]
