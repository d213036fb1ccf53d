"""Per-example metrics against numbers worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from unlearnlm.errors import ConfigError
from unlearnlm.evaluation.metrics import (
    cosine_score,
    entailment_score,
    normalized_probability,
    probability,
    rouge_l_recall,
    token_entropy,
    truth_ratio_raw,
    truth_ratio_score,
)
from unlearnlm.evaluation.registry import METRICS, STAGES
from unlearnlm.evaluation.sets import EVAL_SETS, entailment_direction, eval_set, is_forget_set, set_kind


def test_rouge_l_recall_lcs_over_reference_length():
    """ref: the cat sat on the mat (6 tokens); gen: the cat was on a mat.
    LCS = the, cat, on, mat = 4 -> recall 4/6. Case and punctuation are ignored."""
    assert rouge_l_recall("The cat was on a mat.", "the cat sat on the mat") == pytest.approx(4 / 6)


def test_rouge_l_recall_stems():
    """ref: he was running fast -> he, was, run, fast (4); gen: he runs -> he, run.
    Porter stemming maps running/runs -> run, so LCS = 2 -> 2/4 = 0.5 (0.25 unstemmed)."""
    assert rouge_l_recall("he runs", "he was running fast") == pytest.approx(0.5)


def test_rouge_l_recall_extremes():
    assert rouge_l_recall("a b c", "a b c") == 1.0
    assert rouge_l_recall("x y", "a b c") == 0.0


def test_probability():
    """exp(-NLL): NLL 0 -> 1; NLL ln 4 -> 1/4."""
    assert probability(0.0) == 1.0
    assert probability(math.log(4)) == pytest.approx(0.25)


def test_normalized_probability_matches_direct_formula():
    """NLL 1 vs perturbed [2, 3]: e^-1 / (e^-1 + e^-2 + e^-3) = 0.66524..."""
    direct = math.exp(-1) / (math.exp(-1) + math.exp(-2) + math.exp(-3))
    assert normalized_probability(1.0, [2.0, 3.0]) == pytest.approx(direct)
    assert direct == pytest.approx(0.6652409558)


def test_normalized_probability_is_stable_at_large_nll():
    """NLL 1000 vs [1001]: direct form is 0/0; the ratio is 1 / (1 + e^-1) = 0.731058..."""
    assert normalized_probability(1000.0, [1001.0]) == pytest.approx(1 / (1 + math.exp(-1)))


def test_truth_ratio_raw():
    """base 2, perturbed [3, 4]: mean 3.5, R = e^(3.5 - 2) = e^1.5 = 4.48169..."""
    assert truth_ratio_raw(2.0, [3.0, 4.0]) == pytest.approx(math.exp(1.5))


def test_perturbed_nlls_required():
    with pytest.raises(ValueError):
        truth_ratio_raw(1.0, [])
    with pytest.raises(ValueError):
        normalized_probability(1.0, [])


@pytest.mark.parametrize(
    "R, forget_score, other_score",
    [
        (2.0, 0.5, 0.5),  # forget: 1 - min(2, 1/2) = 0.5; other: 1 - 1/2 = 0.5
        (0.5, 0.5, 0.0),  # forget: 1 - min(0.5, 2) = 0.5; other: max(0, 1 - 2) = 0
        (4.0, 0.75, 0.75),  # 1 - 1/4 both ways
        (1.0, 0.0, 0.0),  # no preference between base and perturbed
        (0.0, 1.0, 0.0),  # underflowed R: min(0, inf) = 0; max(0, 1 - inf) = 0
        (math.inf, 1.0, 1.0),  # overflowed R: 1/R = 0
    ],
)
def test_truth_ratio_score(R, forget_score, other_score):
    assert truth_ratio_score(R, forget=True) == pytest.approx(forget_score)
    assert truth_ratio_score(R, forget=False) == pytest.approx(other_score)


def test_truth_ratio_from_nlls():
    """base 3, perturbed [2, 2]: R = e^-1 = 0.36788. Forget: 1 - e^-1 = 0.63212;
    non-forget: max(0, 1 - e) = 0."""
    R = truth_ratio_raw(3.0, [2.0, 2.0])
    assert truth_ratio_score(R, forget=True) == pytest.approx(1 - math.exp(-1))
    assert truth_ratio_score(R, forget=False) == 0.0


def test_truth_ratio_score_rejects_nan():
    with pytest.raises(ValueError):
        truth_ratio_score(float("nan"), forget=True)


@pytest.mark.parametrize(
    "tokens, expected",
    [
        # counts 2,1,1 of n=4: H = 0.5*1 + 0.25*2 + 0.25*2 = 1.5 bits; / log2 4 = 0.75
        ([1, 1, 2, 3], 0.75),
        ([5], 0.0),  # n <= 1
        ([], 0.0),
        ([7, 7, 7], 0.0),  # H = 0
        ([1, 2, 3, 4], 1.0),  # all distinct: H = log2 n
        # counts 2,2 of n=4: H = 1 bit; / 2 = 0.5
        ([9, 9, 8, 8], 0.5),
    ],
)
def test_token_entropy(tokens, expected):
    assert token_entropy(tokens) == pytest.approx(expected)


def test_cosine_score():
    """cos([1,0],[1,1]) = 1/sqrt 2; opposite vectors clip to 0; zero vector -> 0."""
    assert cosine_score(np.array([1.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(2**-0.5)
    assert cosine_score(np.array([1.0, 2.0]), np.array([-1.0, -2.0])) == 0.0
    assert cosine_score(np.zeros(3), np.ones(3)) == 0.0
    assert cosine_score(np.array([3.0, 4.0]), np.array([6.0, 8.0])) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "is_ent, rouge, expected",
    [(True, 0.5, 1.0), (True, 0.1, 1.0), (True, 0.099, 0.0), (False, 1.0, 0.0), (False, 0.0, 0.0)],
)
def test_entailment_score_rouge_floor(is_ent, rouge, expected):
    assert entailment_score(is_ent, rouge) == expected


@pytest.mark.parametrize(
    "set_name, family, direction",
    [
        ("forget", "tofu", ("generation", "reference")),
        ("retain", "tofu", ("reference", "generation")),
        ("real_authors", "tofu", ("reference", "generation")),
        ("world_facts", "tofu", ("reference", "generation")),
        ("forget", "real_world", ("generation", "reference")),
        ("neighbor", "real_world", ("generation", "reference")),
    ],
)
def test_entailment_direction(set_name, family, direction):
    assert entailment_direction(set_name, family) == direction


def test_metric_registry():
    assert METRICS.names()[:6] == [
        "rouge", "probability", "truth_ratio", "token_entropy", "cosine_similarity", "entailment",
    ]
    for entry in METRICS:
        assert entry.obj.needs and entry.obj.needs <= set(STAGES)
        assert entry.obj.higher_is_better is not entry.name.startswith("mia_")  # lower MIA score = member
        assert entry.description
    assert METRICS.get("entailment").needs == {"generation", "nli"}
    with pytest.raises(ConfigError, match="did you mean 'rouge'"):
        METRICS.get("rogue")


def test_eval_set_table():
    tofu, rw = EVAL_SETS["tofu"], EVAL_SETS["real_world"]
    assert set(tofu) == {"forget", "retain", "real_authors", "world_facts", "holdout"}
    assert set(rw) == {"forget", "neighbor"}
    assert set_kind("holdout") == "holdout" and set_kind("neighbor") == "utility"
    assert {s.truth_key for s in tofu.values()} == {"answer"}
    assert {s.truth_key for s in rw.values()} == {"golden_answer"}
    assert eval_set("retain", "tofu").truth_ratio_base_key == "paraphrased_answer"
    assert eval_set("neighbor", "real_world").truth_ratio_base_key == "paraphrased_answer"
    assert eval_set("world_facts", "tofu").truth_ratio_base_key == "answer"
    assert eval_set("real_authors", "tofu").cosine_key == "original_answer"
    assert eval_set("forget", "real_world").cosine_key == "answer"
    assert eval_set("real_authors", "tofu").probability_form == "normalized"
    assert eval_set("forget", "tofu").probability_form == "plain"
    assert is_forget_set("forget") and not is_forget_set("neighbor")


def test_eval_set_unknown_names():
    with pytest.raises(ConfigError, match="real_world"):
        eval_set("forget", "realworld")
    with pytest.raises(ConfigError, match="neighbor"):
        eval_set("neighbour", "real_world")
    with pytest.raises(ConfigError):
        eval_set("neighbor", "tofu")
    with pytest.raises(ConfigError):
        is_forget_set("holdin")
