"""Bootstrap intervals against independent computations: a hand-written resampling loop, the
normal approximation, and differences that are constant by construction."""
from __future__ import annotations

import math

import numpy as np
import pytest

from unlearnlm.evaluation.aggregates import FE_METRICS, MU_METRICS
from unlearnlm.evaluation.intervals import intervals, paired_differences


def _forget_records(rng, n):
    return [{"question": f"q{i}", **{m: float(rng.random()) for m in MU_METRICS}} for i in range(n)]


def test_fe_interval_equals_a_hand_written_bootstrap_of_the_example_averages():
    records = {"forget": _forget_records(np.random.default_rng(1), 30)}
    got = intervals(records, "tofu", resamples=500, seed=7)
    # FE = 1 - mean over the five FE metrics of their set means = 1 - the mean of each example's
    # five-metric average: resample those averages with the same draws, by hand
    y = np.array([np.mean([r[m] for m in FE_METRICS]) for r in records["forget"]])
    draws = np.random.default_rng(7).integers(0, 30, size=(500, 30))
    fe = [1 - y[row].mean() for row in draws]
    lo, hi = np.percentile(fe, [2.5, 97.5])
    assert got["aggregates"]["forget_efficacy"] == pytest.approx((lo, hi), abs=1e-12)
    assert got["aggregates"]["model_utility"] is None  # no utility set: no MU, no interval
    rouge = np.array([r["rouge"] for r in records["forget"]])
    assert got["sets"]["forget"]["rouge"] == pytest.approx(
        tuple(np.percentile([rouge[row].mean() for row in draws], [2.5, 97.5])), abs=1e-12)


def test_set_mean_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(3)
    records = {"retain": _forget_records(rng, 400)}
    lo, hi = intervals(records, "tofu", resamples=4000, seed=0)["sets"]["retain"]["probability"]
    values = np.array([r["probability"] for r in records["retain"]])
    half = 1.96 * values.std() / math.sqrt(len(values))  # the mean's standard error, by hand
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.08)
    assert lo < values.mean() < hi


def test_intervals_are_seeded_and_collapse_on_constant_data():
    records = {"forget": [{"question": f"q{i}", **dict.fromkeys(MU_METRICS, 0.25)} for i in range(5)]}
    once = intervals(records, "tofu", resamples=200, seed=0)
    assert once == intervals(records, "tofu", resamples=200, seed=0)
    assert once["aggregates"]["forget_efficacy"] == pytest.approx((0.75, 0.75))


def test_paired_difference_of_a_constant_shift_is_exact():
    rng = np.random.default_rng(5)
    a = {"forget": _forget_records(rng, 25)}
    b = {"forget": [{**r, **{m: r[m] - 0.1 for m in MU_METRICS}} for r in reversed(a["forget"])]}  # order differs
    diff = paired_differences(a, b, "tofu", resamples=300, seed=1)
    # every resample draws the same questions for both: FE(A) - FE(B) = -0.1 exactly
    assert diff["forget_efficacy"] == pytest.approx((-0.1, -0.1, -0.1), abs=1e-12)
    unpaired = intervals(a, "tofu", resamples=300, seed=1)["aggregates"]["forget_efficacy"]
    assert unpaired[1] - unpaired[0] > 0.05  # the same models' FE alone is uncertain
    assert diff["model_utility"] is None


def test_zero_one_scores_match_the_binomial_interval():
    # 60 of 200 entailment scores are 1: the normal (Wald) binomial interval is
    # p +- 1.96 sqrt(p (1 - p) / n) = 0.3 +- 0.0635
    records = {"retain": [{"question": f"q{i}", "entailment": float(i < 60)} for i in range(200)]}
    lo, hi = intervals(records, "tofu", resamples=4000, seed=2)["sets"]["retain"]["entailment"]
    half = 1.96 * math.sqrt(0.3 * 0.7 / 200)
    assert lo == pytest.approx(0.3 - half, abs=0.012) and hi == pytest.approx(0.3 + half, abs=0.012)


def test_a_model_against_itself_differs_by_exactly_zero():
    a = {"forget": _forget_records(np.random.default_rng(9), 15)}
    assert paired_differences(a, a, "tofu", resamples=200)["forget_efficacy"] == (0.0, 0.0, 0.0)


def test_mia_auc_intervals_resample_both_sets():
    forget = [{"question": f"f{i}", "mia_loss": 1.0 + 0.01 * i} for i in range(12)]
    holdout = [{"question": f"h{i}", "mia_loss": 2.0 + 0.01 * i} for i in range(12)]
    got = intervals({"forget": forget, "holdout": holdout}, "tofu", resamples=300)["aggregates"]
    assert got["auc_mia_loss"] == (1.0, 1.0)  # separated sets stay separated in every resample
    mixed = [{"question": f"h{i}", "mia_loss": 1.0 + 0.01 * i} for i in range(12)]  # the same scores
    lo, hi = intervals({"forget": forget, "holdout": mixed}, "tofu", resamples=300)["aggregates"]["auc_mia_loss"]
    assert lo < 0.5 < hi
