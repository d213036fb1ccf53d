"""The evaluation sets of each data family and which row fields they score (docs/method.md, section 7).

    from unlearnlm.evaluation.sets import eval_set
    eval_set("real_authors", "tofu").truth_key      # -> "answer"
    eval_set("holdout", "tofu").kind                # -> "holdout"

A data family is "tofu" (fictitious and continual runs) or "real_world". Each set has a
kind: "forget" (the forget set), "utility" (enters Model Utility) or "holdout" (never trained
on; only the membership-inference metrics are computed on it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from unlearnlm.errors import ConfigError

Side = Literal["generation", "reference"]
SetKind = Literal["forget", "utility", "holdout"]
FAMILIES = ("tofu", "real_world")


@dataclass(frozen=True)
class EvalSet:
    """Which fields of a data row each metric uses on one evaluation set."""

    kind: SetKind
    truth_key: str  # ground truth for ROUGE and entailment, and the answer the token metrics score
    truth_ratio_base_key: str  # base answer of the truth ratio
    cosine_key: str  # reference for cosine similarity
    probability_form: Literal["plain", "normalized"]
    nli_premise: Side  # the other side is the hypothesis
    # The ground truth is a short answer ("William Shakespeare"): the NLI judge sees it after
    # its question (a bare name entails no sentence). Beyond method.md; see README, Judges.
    nli_with_question: bool = False

    @property
    def is_forget(self) -> bool:
        return self.kind == "forget"


_G, _R = "generation", "reference"
# One table: data family -> set name -> fields.
# Real-world "answer" is the original model's own output, hence the cosine reference.
EVAL_SETS: dict[str, dict[str, EvalSet]] = {
    "tofu": {
        "forget": EvalSet("forget", "answer", "paraphrased_answer", "answer", "plain", _G),
        "retain": EvalSet("utility", "answer", "paraphrased_answer", "answer", "plain", _R),
        "real_authors": EvalSet("utility", "answer", "answer", "original_answer", "normalized", _R, True),
        "world_facts": EvalSet("utility", "answer", "answer", "original_answer", "normalized", _R, True),
        "holdout": EvalSet("holdout", "answer", "answer", "answer", "plain", _G),
    },
    "real_world": {
        "forget": EvalSet("forget", "golden_answer", "paraphrased_answer", "answer", "plain", _G),
        "neighbor": EvalSet("utility", "golden_answer", "paraphrased_answer", "answer", "plain", _G),
    },
}


def eval_set(set_name: str, family: str) -> EvalSet:
    """The table row for ``set_name`` in data ``family`` ("tofu" or "real_world"; continual
    runs pass the family of their forget file)."""
    if family not in EVAL_SETS:
        raise ConfigError(f"unknown data family {family!r}; valid: {', '.join(EVAL_SETS)}")
    sets = EVAL_SETS[family]
    if set_name not in sets:
        raise ConfigError(f"unknown {family} evaluation set {set_name!r}; valid: {', '.join(sets)}")
    return sets[set_name]


def set_kind(set_name: str) -> SetKind:
    """The kind of ``set_name`` (the same in every family)."""
    for sets in EVAL_SETS.values():
        if set_name in sets:
            return sets[set_name].kind
    names = sorted({n for sets in EVAL_SETS.values() for n in sets})
    raise ConfigError(f"unknown evaluation set {set_name!r}; valid: {', '.join(names)}")


def is_forget_set(set_name: str) -> bool:
    """Whether ``set_name`` is a forget set."""
    return set_kind(set_name) == "forget"


def entailment_direction(set_name: str, family: str) -> tuple[Side, Side]:
    """(premise, hypothesis) for the NLI classifier on this set."""
    premise = eval_set(set_name, family).nli_premise
    return (premise, _R if premise == _G else _G)
