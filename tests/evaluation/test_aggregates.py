"""Aggregate scores against numbers worked out by hand."""
from __future__ import annotations

import math

import pytest
from scipy import stats

from unlearnlm.errors import ConfigError
from unlearnlm.evaluation.aggregates import (
    aggregate,
    forget_efficacy,
    forget_quality,
    harmonic_mean,
    model_utility,
    mu_retain,
    set_means,
    tofu_model_utility,
)

SIX = ("rouge", "probability", "truth_ratio", "token_entropy", "cosine_similarity", "entailment")


def uniform(value: float) -> dict[str, float]:
    return {m: value for m in SIX}


def test_harmonic_mean_three_values():
    """HM(1, 2, 4) = 3 / (1 + 1/2 + 1/4) = 3 / 1.75 = 12/7."""
    assert harmonic_mean([1, 2, 4]) == pytest.approx(12 / 7)


def test_harmonic_mean_zero_and_errors():
    assert harmonic_mean([0.5, 0.0, 0.9]) == 0.0
    assert harmonic_mean([0.5, -0.1]) == 0.0
    with pytest.raises(ValueError):
        harmonic_mean([0.5, float("nan")])
    with pytest.raises(ValueError):
        harmonic_mean([])


def test_set_means_ignores_none_and_other_keys():
    """rouge (1 + 0 + 0.5)/3 = 0.5; entailment None skipped -> (1 + 0)/2 = 0.5;
    cosine all None -> absent; text fields ignored."""
    rows = [
        {"generation": "x", "rouge": 1.0, "entailment": 1.0, "cosine_similarity": None},
        {"generation": "y", "rouge": 0.0, "entailment": None},
        {"generation": "z", "rouge": 0.5, "entailment": 0.0},
    ]
    assert set_means(rows) == {"rouge": 0.5, "entailment": 0.5}


def test_model_utility_tofu_18_numbers():
    """retain and real_authors at 0.5 (12 numbers), world_facts at 1.0 (6):
    18 / (12 * 2 + 6 * 1) = 18/30 = 0.6. The forget set (all zero) is left out."""
    sets = {"forget": uniform(0.0), "retain": uniform(0.5),
            "real_authors": uniform(0.5), "world_facts": uniform(1.0)}
    assert model_utility(sets) == pytest.approx(0.6)


def test_model_utility_one_zero_is_zero():
    sets = {"retain": uniform(0.5), "real_authors": uniform(0.5),
            "world_facts": {**uniform(1.0), "entailment": 0.0}}
    assert model_utility(sets) == 0.0


def test_model_utility_neighbor_6_numbers():
    """Neighbor means 1, 2, 4, 1, 2, 4: 6 / (2 * 1.75) = 12/7."""
    neighbor = dict(zip(SIX, (1.0, 2.0, 4.0, 1.0, 2.0, 4.0)))
    sets = {"forget": uniform(0.1), "neighbor": neighbor}
    assert model_utility(sets) == pytest.approx(12 / 7)
    assert mu_retain(sets) == pytest.approx(12 / 7)


def test_model_utility_missing_metric_raises():
    with pytest.raises(ValueError, match="cosine_similarity"):
        model_utility({"retain": {m: 0.5 for m in SIX if m != "cosine_similarity"}})


def test_mu_retain_uses_retain_only():
    """Retain at 0.25 -> 0.25, whatever real_authors/world_facts hold."""
    sets = {"retain": uniform(0.25), "real_authors": uniform(1.0), "world_facts": uniform(0.0)}
    assert mu_retain(sets) == pytest.approx(0.25)


def test_forget_efficacy_excludes_token_entropy():
    """1 - (0.2 + 0.1 + 0.3 + 0.4 + 0.0) / 5 = 1 - 0.2 = 0.8; token entropy 0.9 unused."""
    means = {"rouge": 0.2, "probability": 0.1, "truth_ratio": 0.3, "token_entropy": 0.9,
             "cosine_similarity": 0.4, "entailment": 0.0}
    assert forget_efficacy(means) == pytest.approx(0.8)


def test_forget_quality_exact_small_sample():
    """x = [1,2,3] vs y = [4,5,6]: D = 1. Of C(6,3) = 20 equally likely orderings, 2
    (all x first, all y first) reach D = 1, so the exact two-sided p = 2/20 = 0.1."""
    assert forget_quality([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.1)


def test_forget_quality_matches_kstest():
    x = [0.3, 0.9, 1.1, 1.7, 2.2, 0.4, 0.8]
    y = [0.5, 1.0, 1.2, 2.5, 3.1, 2.9]
    assert forget_quality(x, y) == pytest.approx(stats.kstest(x, y).pvalue)
    assert forget_quality(x, x) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        forget_quality([], y)


def test_tofu_model_utility_9_numbers():
    """probability, rouge, truth_ratio: retain 0.5, real_authors 1.0, world_facts 0.25:
    9 / (3*2 + 3*1 + 3*4) = 9/21 = 3/7. The other metrics (0 here) are not used."""
    def sets_at(v):
        return {"probability": v, "rouge": v, "truth_ratio": v,
                "token_entropy": 0.0, "cosine_similarity": 0.0, "entailment": 0.0}
    sets = {"retain": sets_at(0.5), "real_authors": sets_at(1.0), "world_facts": sets_at(0.25)}
    assert tofu_model_utility(sets) == pytest.approx(3 / 7)
    del sets["world_facts"]
    assert tofu_model_utility(sets) is None


def test_aggregate_tofu():
    sets = {"forget": uniform(0.2), "retain": uniform(0.5),
            "real_authors": uniform(0.5), "world_facts": uniform(1.0)}
    out = aggregate(sets, "tofu")
    assert out["model_utility"] == pytest.approx(0.6)
    assert out["mu_retain"] == pytest.approx(0.5)
    assert out["forget_efficacy"] == pytest.approx(0.8)
    # 9 / (6*2 + 3*1) = 0.6
    assert out["tofu_model_utility"] == pytest.approx(0.6)


def test_aggregate_real_world_and_missing_inputs():
    out = aggregate({"forget": uniform(0.4), "neighbor": uniform(0.5)}, "real_world")
    assert out == pytest.approx({"model_utility": 0.5, "mu_retain": 0.5,
                                 "forget_efficacy": 0.6, "tofu_model_utility": None})
    partial = {"neighbor": {m: 0.5 for m in SIX if m != "entailment"}}
    out = aggregate(partial, "real_world")
    assert out == {"model_utility": None, "mu_retain": None,
                   "forget_efficacy": None, "tofu_model_utility": None}


def test_aggregate_checks_set_names_and_nan():
    with pytest.raises(ConfigError):
        aggregate({"neighbor": uniform(0.5)}, "tofu")
    with pytest.raises(ValueError):
        aggregate({"retain": {**uniform(0.5), "rouge": math.nan}}, "tofu")
