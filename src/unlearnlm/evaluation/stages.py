"""The per-set stages the metrics need, each run once over the whole set (docs/method.md, section 7).

    examples, seconds = run_stages({"generation", "likelihood"}, inputs)

generation (greedy), likelihood (one call over every (question, answer) the set scores),
embedding and nli (of the generations), token_stats (per-token log-probabilities of the
trained answer) and gradients (one backward per example). Each fills its fields of the
``registry.Example`` of every row and adds its record fields.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from unlearnlm.data.prompts import PromptFormat
from unlearnlm.evaluation.generation import decode, generate_greedy
from unlearnlm.evaluation.judges.labels import nli_reference
from unlearnlm.evaluation.likelihood import answer_grad_norms, answer_token_stats, nll_means
from unlearnlm.evaluation.metrics import truth_ratio_raw
from unlearnlm.evaluation.registry import STAGES, Example
from unlearnlm.evaluation.sets import EvalSet, Side
from unlearnlm.utils import log

DEPENDS = {"embedding": {"generation"}, "nli": {"generation"}}


@dataclass
class SetInputs:
    """One evaluation set and what scores it."""

    model: Any
    tokenizer: Any
    fmt: PromptFormat
    rows: list[dict]
    spec: EvalSet
    direction: tuple[Side, Side]
    judges: Any
    max_new_tokens: int
    batch_size: int
    bf16: bool
    set_name: str = "set"
    progress: bool = True
    share_prompts: bool = True  # False: every likelihood pair its own sequence (the pre-issue-17 path)


def _generation(x: SetInputs, examples: list[Example]) -> None:
    questions = [r["question"] for r in x.rows]
    ids = generate_greedy(x.model, x.tokenizer, x.fmt, questions, x.max_new_tokens, x.batch_size, x.bf16, x.progress)
    for ex, gen_ids in zip(examples, ids):
        ex.generated_ids, ex.generation = gen_ids, decode(x.tokenizer, gen_ids)


def _likelihood(x: SetInputs, examples: list[Example]) -> None:
    pairs, slots = [], []  # slots[i] = (answer index, base index, perturbed slice)
    for r in x.rows:
        q, first, perturbed = r["question"], len(pairs), list(r["perturbed_answer"])
        pairs += [(q, r[x.spec.truth_key]), (q, r[x.spec.truth_ratio_base_key])] + [(q, p) for p in perturbed]
        slots.append((first, first + 1, slice(first + 2, first + 2 + len(perturbed))))
    nll = nll_means(x.model, x.tokenizer, x.fmt, pairs, x.batch_size, x.bf16, x.progress, x.share_prompts)
    for ex, (a, b, perturbed) in zip(examples, slots):
        ex.nll_answer, ex.nll_base, ex.nll_perturbed = nll[a], nll[b], nll[perturbed]


def _embedding(x: SetInputs, examples: list[Example]) -> None:
    refs = [r[x.spec.cosine_key] for r in x.rows]
    emb = x.judges.embedder.encode([ex.generation for ex in examples] + refs)
    for i, ex in enumerate(examples):
        ex.embeddings = (emb[i], emb[len(examples) + i])


def _nli_truth(x: SetInputs, row: dict) -> str:
    truth = row[x.spec.truth_key]
    return nli_reference(row["question"], truth) if x.spec.nli_with_question else truth


def _nli(x: SetInputs, examples: list[Example]) -> None:
    side = {"generation": [ex.generation for ex in examples], "reference": [_nli_truth(x, r) for r in x.rows]}
    for ex, entailed in zip(examples, x.judges.nli.is_entailment(side[x.direction[0]], side[x.direction[1]])):
        ex.entailed = bool(entailed)


def _member_pairs(x: SetInputs) -> list[tuple[str, str]]:
    return [(r["question"], r["answer"]) for r in x.rows]


def _token_stats(x: SetInputs, examples: list[Example]) -> None:
    stats = answer_token_stats(x.model, x.tokenizer, x.fmt, _member_pairs(x), x.batch_size, x.bf16, x.progress,
                               x.share_prompts)
    for ex, s in zip(examples, stats):
        ex.tokens = s


def _gradients(x: SetInputs, examples: list[Example]) -> None:
    for ex, g in zip(examples, answer_grad_norms(x.model, x.tokenizer, x.fmt, _member_pairs(x), x.progress)):
        ex.grad_norm = g


RUN = {"generation": _generation, "likelihood": _likelihood, "embedding": _embedding, "nli": _nli,
       "token_stats": _token_stats, "gradients": _gradients}


def stage_fields(stage: str, x: SetInputs, ex: Example) -> dict:
    """The record fields a stage leaves beside the scores (for reading and for Forget Quality)."""
    if stage == "generation":
        return {"generation": ex.generation, "generated_tokens": len(ex.generated_ids)}
    if stage == "likelihood":
        return {"truth_ratio_raw": truth_ratio_raw(ex.nll_base, ex.nll_perturbed), "nll_answer": ex.nll_answer,
                "nll_base": ex.nll_base, "nll_perturbed": ex.nll_perturbed}
    if stage == "embedding" and x.spec.cosine_key != x.spec.truth_key:
        return {"cosine_reference": ex.row[x.spec.cosine_key]}
    if stage == "nli":
        fields = {"nli_entailment": ex.entailed}
        if x.spec.nli_with_question:
            fields["nli_reference"] = _nli_truth(x, ex.row)
        return fields
    return {}


def run_stages(needed: set[str], x: SetInputs) -> tuple[list[Example], dict[str, float]]:
    """Run ``needed`` (and what they depend on) in STAGES order; the examples and each stage's seconds."""
    needed = set(needed) | {d for s in needed for d in DEPENDS.get(s, ())}
    examples = [Example(row, x.spec) for row in x.rows]
    seconds = {}
    for stage in (s for s in STAGES if s in needed):
        start = time.time()
        RUN[stage](x, examples)
        t = time.time() - start
        seconds[stage] = round(t, 3)
        log(f"eval {x.set_name}: {stage} {t:.1f}s ({len(examples) / max(t, 1e-9):.2f} examples/s)")
    return examples, seconds
