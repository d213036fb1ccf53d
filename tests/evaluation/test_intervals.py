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


def test_a_repeated_question_pairs_occurrence_by_occurrence():
    # q0 is asked twice; B differs from A only at the first q0 (0.3 instead of 0.1). Every metric
    # equals the score, so FE = 1 - the mean score: FE(A) - FE(B) = -(0.1 - 0.3) / 3 = +0.0667.
    # Keyed by the question alone, both models' q0 would be their last one and the difference 0.
    def model(scores):
        return {"forget": [{"question": q, **dict.fromkeys(MU_METRICS, v)} for q, v in zip(["q0", "q0", "q1"], scores)]}

    diff, lo, hi = paired_differences(model([0.1, 0.9, 0.5]), model([0.3, 0.9, 0.5]), "tofu", resamples=200,
                                      seed=3)["forget_efficacy"]
    assert diff == pytest.approx(0.2 / 3, abs=1e-12) and lo >= 0 and hi <= 0.2 + 1e-12


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


def _privacy_records(shift: float, n: int = 10) -> dict:
    """Forget and holdout records with every MIA score (mia_loss is also the Reference's NLL)."""
    from unlearnlm.evaluation.aggregates import MIA_METRICS

    def rec(q, base):
        return {"question": q, **{m: base for m in MIA_METRICS}}

    return {"forget": [rec(f"f{i}", 1.0 + shift + 0.1 * i) for i in range(n)],
            "holdout": [rec(f"h{i}", 1.05 + 0.1 * i) for i in range(n)]}  # interleaved: AUC near 1/2


def test_retain_relative_intervals_of_a_model_against_itself_are_exact():
    from unlearnlm.evaluation.intervals import retain_relative_intervals

    same = _privacy_records(0.0)
    got = retain_relative_intervals(same, same, resamples=200)
    # privleak((1 - A) - (1 - A)) = 0 and the Reference's score differences are all 0 (AUC 1/2),
    # in every resample. Forget Quality, a p-value, gets no interval.
    assert got == {"privleak": (0.0, 0.0), "auc_mia_reference": (0.5, 0.5)}


def test_retain_relative_intervals_cover_the_point_and_are_seeded():
    from unlearnlm.evaluation.aggregates import retain_relative
    from unlearnlm.evaluation.intervals import retain_relative_intervals

    model, retain = _privacy_records(-0.3), _privacy_records(0.0)
    got = retain_relative_intervals(model, retain, resamples=300)
    point = retain_relative(model, retain)
    assert got["privleak"][0] <= point["privleak"] <= got["privleak"][1] and got["privleak"][0] < got["privleak"][1]
    # the forget scores sit 0.3 below the retain model's, the holdout ones on them: every resample
    # separates the Reference's score differences completely
    assert point["auc_mia_reference"] == 1.0 and got["auc_mia_reference"] == (1.0, 1.0)
    assert retain_relative_intervals(model, retain, resamples=300) == got
    assert retain_relative_intervals({"holdout": model["holdout"]}, retain) == {}


def test_seed_averaged_paired_difference_is_the_mean_over_seeds_with_shared_draws():
    """Two seeds per side: the point is mean FE(A_s) - mean FE(B_s), and each resample draws the
    same questions for all four models, checked against a hand-written loop."""
    rng = np.random.default_rng(11)
    a0 = {"forget": _forget_records(rng, 20)}
    a1 = {"forget": [{**r, **{m: r[m] * 0.5 for m in MU_METRICS}} for r in a0["forget"]]}
    b0 = {"forget": _forget_records(rng, 20)}
    b1 = {"forget": list(reversed(b0["forget"]))[:18]}  # two questions missing: only 18 shared
    diff, lo, hi = paired_differences([a0, a1], [b0, b1], "tofu", resamples=400, seed=2)["forget_efficacy"]
    shared = [r["question"] for r in a0["forget"] if r["question"] in {x["question"] for x in b1["forget"]}]

    def example_fe(model):  # each shared question's mean over the five FE metrics, in a0's order
        by_q = {r["question"]: r for r in model["forget"]}
        return np.array([np.mean([by_q[q][m] for m in FE_METRICS]) for q in shared])

    ya, yb = [example_fe(m) for m in (a0, a1)], [example_fe(m) for m in (b0, b1)]
    assert diff == pytest.approx(np.mean([1 - y.mean() for y in ya]) - np.mean([1 - y.mean() for y in yb]))
    draws = np.random.default_rng(2).integers(0, len(shared), size=(400, len(shared)))
    by_hand = [np.mean([1 - y[d].mean() for y in ya]) - np.mean([1 - y[d].mean() for y in yb]) for d in draws]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(by_hand, [2.5, 97.5])), abs=1e-12)
    # one model per side is the two-model paired difference
    assert paired_differences([a0], [b0], "tofu", resamples=100) == paired_differences(a0, b0, "tofu", resamples=100)


def test_paired_differences_include_the_attack_aucs_counted_by_hand():
    # LOSS attack, lower NLL = member. B (shift 0): forget 1.0 + 0.1i against holdout 1.05 + 0.1j
    # is below it when i <= j: sum over j of (j + 1) = 55 of 100 pairs, AUC 0.55.
    # A (shift -0.3): forget 0.7 + 0.1i is below 1.05 + 0.1j when i <= j + 3:
    # 4 + 5 + 6 + 7 + 8 + 9 + 10 x 4 = 79 of 100 pairs, AUC 0.79. A - B = +0.24.
    a, b = _privacy_records(-0.3), _privacy_records(0.0)
    got = paired_differences(a, b, "tofu", resamples=300, seed=4)
    diff, lo, hi = got["auc_mia_loss"]
    assert diff == pytest.approx(0.79 - 0.55) and lo <= diff <= hi and lo < hi
    assert paired_differences(a, b, "tofu", resamples=300, seed=4) == got  # seeded
    assert paired_differences(a, a, "tofu", resamples=300)["auc_mia_loss"] == (0.0, 0.0, 0.0)
    # without a holdout set there is no attack to compare
    assert "auc_mia_loss" not in paired_differences({"forget": a["forget"]}, {"forget": b["forget"]}, "tofu",
                                                     resamples=50)
