"""Prompt attacks change the prompt and nothing else; the relearning split is disjoint and seeded."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from unlearnlm.attacks.prompts import fewshot, paraphrase, system_prompt
from unlearnlm.attacks.relearn import halves
from unlearnlm.config.schema import AttackConfig
from unlearnlm.data.prompts import PromptFormat, encode_qa
from unlearnlm.errors import DataError

ROWS = [{"question": f"Q{i}?", "answer": f"A{i}.", "paraphrased_question": f"Rephrased Q{i}?",
         "perturbed_answer": [f"P{i}."], "paraphrased_answer": f"PA{i}."} for i in range(6)]
RETAIN = [{"question": f"R{i}?", "answer": f"RA{i}."} for i in range(10)]
CTX = SimpleNamespace(settings=AttackConfig(fewshot_k=2, seed=0), retain=RETAIN)


def test_paraphrase_changes_the_question_only():
    rows, edit = paraphrase(CTX, ROWS)
    for old, new in zip(ROWS, rows):
        assert new["question"] == old["paraphrased_question"]
        assert {k: v for k, v in new.items() if k != "question"} == {k: v for k, v in old.items() if k != "question"}
    fmt = PromptFormat("plain")
    assert edit(fmt) == fmt
    with pytest.raises(DataError, match="paraphrased_question"):
        paraphrase(CTX, [{"question": "Q?", "answer": "A."}])


@pytest.mark.parametrize("attack", [fewshot, system_prompt])
def test_plain_prompt_attacks_only_prepend_text_and_keep_rows(attack):
    rows, edit = attack(CTX, ROWS)
    assert rows is ROWS
    fmt = PromptFormat("plain")
    attacked = edit(fmt)
    for r in ROWS:
        before, after = fmt.prompt(None, r["question"]), attacked.prompt(None, r["question"])
        assert after != before and after.endswith(before)  # the question is asked exactly as before


def test_fewshot_prefix_is_k_retain_pairs_and_seeded():
    _, edit = fewshot(CTX, ROWS)
    shots = edit(PromptFormat("plain")).fewshot
    assert len(shots) == 2 and all((q, a) in {(r["question"], r["answer"]) for r in RETAIN} for q, a in shots)
    assert edit(PromptFormat("plain")).fewshot == fewshot(CTX, ROWS)[1](PromptFormat("plain")).fewshot
    text = edit(PromptFormat("plain")).prompt(None, "Q0?")
    q, a = shots[0]
    assert text.startswith(f"Question: {q}\nAnswer: {a}\n\n") and text.endswith("Question: Q0?\nAnswer:")
    with pytest.raises(DataError, match="fewshot_k"):
        fewshot(SimpleNamespace(settings=AttackConfig(fewshot_k=20), retain=RETAIN), ROWS)


def test_chat_prompt_attacks_keep_the_answer_tokens(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    fmt = PromptFormat.for_tokenizer(tok)
    for attack in (fewshot, system_prompt):
        attacked = attack(CTX, ROWS)[1](fmt)
        plain, hit = (encode_qa(tok, f, "Q0?", "A0.") for f in (fmt, attacked))
        n_answer = sum(label != -100 for label in plain["labels"])
        assert plain["labels"][-n_answer:] == hit["labels"][-n_answer:]  # the same answer is scored
        assert sum(label != -100 for label in hit["labels"]) == n_answer
        assert len(hit["input_ids"]) > len(plain["input_ids"])
    chat = system_prompt(CTX, ROWS)[1](fmt).prompt(tok, "Q0?")
    assert CTX.settings.system_prompt in chat and "Q0?" in chat
    shots = fewshot(CTX, ROWS)[1](fmt)
    text = shots.prompt(tok, "Q0?")
    assert all(q in text and a in text for q, a in shots.fewshot) and text.index(shots.fewshot[-1][1]) < text.index("Q0?")


def test_halves_are_disjoint_cover_everything_and_are_seeded():
    rows = [{"question": f"Q{i}?"} for i in range(9)]
    trained, scored = halves(rows, seed=0)
    assert len(trained) == 4 and len(scored) == 5
    assert {r["question"] for r in trained}.isdisjoint(r["question"] for r in scored)
    assert sorted(r["question"] for r in trained + scored) == sorted(r["question"] for r in rows)
    assert halves(rows, seed=0) == (trained, scored)
    assert halves(rows, seed=1) != (trained, scored)
