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
