"""Training pairs for the offline NLI judge, from TOFU's perturbed rows (docs/method.md, section 7).

    pairs = make_nli_pairs(rows, exclude_questions, seed=0)   # .train, .heldout: [NLIPair]

Per answer: its paraphrase -> entailment, a perturbed answer -> contradiction, another
answer about the same author -> neutral. Authors with any excluded question are left out;
whole authors are held out for the accuracy check.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from unlearnlm.errors import ConfigError, DataError
from unlearnlm.evaluation.judges.labels import (
    CONTRADICTION,
    ENTAILMENT,
    NEUTRAL,
    nli_reference,
)

ROWS_PER_AUTHOR = 20
DEFAULT_HELDOUT_FRACTION = 0.1
DEFAULT_SWAP_FRACTION = 0.3
DEFAULT_QUESTION_FRACTION = 0.3  # premises prefixed by their question (short-answer sets)

@dataclass(frozen=True)
class NLIPair:
    premise: str
    hypothesis: str
    label: str  # one of LABELS


@dataclass
class NLIPairs:
    """Training and held-out pairs; authors are block indices (rows // rows_per_author)."""

    train: list[NLIPair]
    heldout: list[NLIPair]
    eligible_authors: list[int]
    excluded_authors: list[int]
    heldout_authors: list[int]
    train_authors: list[int] = field(default_factory=list)


def _author_triples(block: Sequence[Mapping[str, Any]], rng: random.Random, swap_fraction: float,
                    question_fraction: float = 0.0):
    """Per row: one (E, C, N) triple with premise = answer (with probability
    ``question_fraction`` prefixed by its question, the form used when the ground truth is a
    short answer), and with probability ``swap_fraction`` a second triple in the swapped
    direction (hypothesis = answer)."""
    triples = []
    for j, row in enumerate(block):
        answer = row["answer"]
        others = [r["answer"] for k, r in enumerate(block) if k != j and r["answer"] != answer]
        if not others:
            continue
        para = row["paraphrased_answer"]
        perturbed = [p for p in row["perturbed_answer"] if p and p != para]
        if not perturbed:
            continue
        premise = nli_reference(row["question"], answer) if rng.random() < question_fraction else answer
        triples.append(
            (
                NLIPair(premise, para, ENTAILMENT),
                NLIPair(premise, rng.choice(perturbed), CONTRADICTION),
                NLIPair(premise, rng.choice(others), NEUTRAL),
            )
        )
        if rng.random() < swap_fraction:
            triples.append(
                (
                    NLIPair(para, answer, ENTAILMENT),
                    NLIPair(rng.choice(perturbed), answer, CONTRADICTION),
                    NLIPair(rng.choice(others), answer, NEUTRAL),
                )
            )
    return triples


def make_nli_pairs(
    rows: Sequence[Mapping[str, Any]],
    exclude_questions: Iterable[str],
    seed: int = 0,
    *,
    max_pairs: int | None = None,
    max_heldout_pairs: int | None = None,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    swap_fraction: float = DEFAULT_SWAP_FRACTION,
    question_fraction: float = DEFAULT_QUESTION_FRACTION,
    rows_per_author: int = ROWS_PER_AUTHOR,
) -> NLIPairs:
    """NLI pairs from TOFU perturbed rows (``answer``, ``paraphrased_answer``,
    ``perturbed_answer``), ``rows_per_author`` consecutive rows per author.

    An author is used only if none of its questions is in ``exclude_questions``. Labels:
    answer -> paraphrase: entailment; answer -> a perturbed answer: contradiction;
    answer -> another answer about the same author: neutral; some triples also in the
    swapped direction. Pairs come in (E, C, N) triples, so every split is class-balanced.
    About ``heldout_fraction`` of the eligible authors (at least one when there are two or
    more) are held out. Deterministic in ``seed``."""
    if rows_per_author < 2:
        raise ConfigError(f"rows_per_author must be >= 2, got {rows_per_author}")
    if not 0 <= heldout_fraction < 1:
        raise ConfigError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    if not 0 <= swap_fraction <= 1:
        raise ConfigError(f"swap_fraction must be in [0, 1], got {swap_fraction}")
    if not 0 <= question_fraction <= 1:
        raise ConfigError(f"question_fraction must be in [0, 1], got {question_fraction}")
    if len(rows) % rows_per_author:
        raise DataError(
            f"NLI pairs: {len(rows)} rows is not a whole number of authors "
            f"({rows_per_author} consecutive rows each)"
        )
    exclude = set(exclude_questions)
    blocks = [rows[i : i + rows_per_author] for i in range(0, len(rows), rows_per_author)]
    excluded = [a for a, b in enumerate(blocks) if any(r.get("question") in exclude for r in b)]
    excluded_set = set(excluded)
    eligible = [a for a in range(len(blocks)) if a not in excluded_set]

    rng = random.Random(seed)
    shuffled = eligible[:]
    rng.shuffle(shuffled)
    n_held = int(round(heldout_fraction * len(eligible))) if heldout_fraction > 0 else 0
    if heldout_fraction > 0 and len(eligible) >= 2:
        n_held = min(max(n_held, 1), len(eligible) - 1)
    heldout_authors = sorted(shuffled[:n_held])
    train_authors = sorted(shuffled[n_held:])

    def pairs_for(authors: list[int], cap: int | None) -> list[NLIPair]:
        triples = []
        for a in authors:  # sorted, so the result depends only on the seed
            triples.extend(_author_triples(blocks[a], rng, swap_fraction, question_fraction))
        rng.shuffle(triples)
        if cap is not None:
            triples = triples[: max(0, cap) // 3]
        pairs = [p for t in triples for p in t]
        rng.shuffle(pairs)
        return pairs

    train = pairs_for(train_authors, max_pairs)
    heldout = pairs_for(heldout_authors, max_heldout_pairs)
    return NLIPairs(train, heldout, eligible, excluded, heldout_authors, train_authors)
