"""Prompt attacks: the same model, the same answers, another way of asking (docs/method.md, section 9).

    rows, edit = paraphrase(ctx, rows)       # the data's paraphrased_question
    rows, edit = fewshot(ctx, rows)          # k retain-set QA pairs as earlier turns
    rows, edit = system_prompt(ctx, rows)    # a system prompt that asks for full answers
    fmt = edit(fmt)                          # the prompt format the model is asked in

Each changes only what comes before the answer: the prompt format or the question text.
Answers, perturbed answers and every scored field stay as they are.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Callable

from unlearnlm.data.prompts import PromptFormat
from unlearnlm.errors import DataError


Edit = Callable[[PromptFormat], PromptFormat]


def _same(fmt: PromptFormat) -> PromptFormat:
    return fmt


def paraphrase(ctx, rows: list[dict]) -> tuple[list[dict], Edit]:
    """The forget questions replaced by their paraphrases (field ``paraphrased_question``)."""
    missing = [i for i, r in enumerate(rows) if not r.get("paraphrased_question")]
    if missing:
        raise DataError(f"attack paraphrase: forget row {missing[0]} has no 'paraphrased_question' field")
    return [{**r, "question": r["paraphrased_question"]} for r in rows], _same


def fewshot_pairs(retain: list[dict], k: int, seed: int) -> tuple[tuple[str, str], ...]:
    """``k`` retain QA pairs drawn with ``seed`` (never forget questions)."""
    if len(retain) < k:
        raise DataError(f"attack fewshot: eval.attack.fewshot_k={k} but the retain set has {len(retain)} QA")
    picked = random.Random(seed).sample(range(len(retain)), k)
    return tuple((retain[i]["question"], retain[i]["answer"]) for i in picked)


def fewshot(ctx, rows: list[dict]) -> tuple[list[dict], Edit]:
    """``eval.attack.fewshot_k`` retain-set QA pairs asked and answered before the question."""
    pairs = fewshot_pairs(ctx.retain, ctx.settings.fewshot_k, ctx.settings.seed)
    return rows, lambda fmt: dataclasses.replace(fmt, fewshot=pairs)


def system_prompt(ctx, rows: list[dict]) -> tuple[list[dict], Edit]:
    """``eval.attack.system_prompt`` as the system prompt (plain formats: a first paragraph)."""
    return rows, lambda fmt: dataclasses.replace(fmt, system_prompt=ctx.settings.system_prompt)
