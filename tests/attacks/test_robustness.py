"""The recovery score and its intervals, against numbers worked by hand."""
from __future__ import annotations

import pytest

from unlearnlm.attacks.robustness import robustness
from unlearnlm.evaluation.aggregates import FE_METRICS


def _records(values: list[float]) -> list[dict]:
    """One record per question, every FE metric equal to the given value."""
    return [{"reference": f"A{i}", **dict.fromkeys(FE_METRICS, v)} for i, v in enumerate(values)]


def test_fe_and_recovery_by_hand():
    # FE = 1 - mean of the FE metrics: before 1 - 0.2 = 0.8, after 1 - 0.5 = 0.5, baseline 1 - 0.9 = 0.1.
    # recovery = (0.8 - 0.5) / (0.8 - 0.1) = 0.3 / 0.7.
    out = robustness(_records([0.1, 0.3]), _records([0.4, 0.6]), _records([0.9, 0.9]), resamples=0)
    assert out["n"] == 2
    assert out["fe_before"] == pytest.approx(0.8) and out["fe_after"] == pytest.approx(0.5)
    assert out["fe_baseline"] == pytest.approx(0.1) and out["change"] == pytest.approx(-0.3)
    assert out["recovery"] == pytest.approx(0.3 / 0.7)
    assert out["intervals"] == {}


def test_mixed_metrics_average_within_a_question():
    rec = [{"reference": "A", **dict(zip(FE_METRICS, [0.0, 0.25, 0.5, 0.75, 1.0]))}]
    out = robustness(rec, rec, rec, resamples=0)
    assert out["fe_before"] == pytest.approx(1 - 0.5)  # mean of 0, .25, .5, .75, 1


def test_no_forgetting_has_no_recovery_and_an_unattacked_model_has_a_zero_change_interval():
    same = _records([0.2, 0.4, 0.6, 0.8])
    out = robustness(same, same, same, resamples=200)
    assert out["recovery"] is None and out["intervals"]["recovery"] is None
    assert out["intervals"]["change"] == (0.0, 0.0)
    lo, hi = out["intervals"]["fe_after"]
    assert lo <= out["fe_after"] <= hi


def test_full_recovery_is_one_in_every_resample():
    before, baseline = _records([0.0, 0.1, 0.2]), _records([0.8, 0.9, 1.0])
    out = robustness(before, baseline, baseline, resamples=100)
    assert out["recovery"] == pytest.approx(1.0)
    assert out["intervals"]["recovery"] == pytest.approx((1.0, 1.0))


def test_records_of_other_questions_are_refused():
    a = _records([0.1, 0.2])
    b = [dict(r, reference="other") for r in a]
    with pytest.raises(ValueError, match="same answers"):
        robustness(a, b, a)


def test_recovery_is_undefined_when_the_forgetting_is_within_noise():
    # before: FE 1 - mean(0.5, 0.1, 0.9) = 0.5; baseline: FE 1 - mean(0.6, 0.2, 0.8) = 0.467.
    # The forgetting, 0.033, is smaller than the question-to-question spread, so its bootstrap
    # interval reaches 0 and the recovery, 0.1 / 0.033 = 3.0 as a plain ratio, is not reported.
    before, baseline = _records([0.5, 0.1, 0.9]), _records([0.6, 0.2, 0.8])
    after = _records([0.6, 0.2, 1.0])  # FE 0.4: change -0.1
    plain = robustness(before, after, baseline, resamples=0)
    assert plain["forgotten"] == pytest.approx(0.5 - (1 - 1.6 / 3))
    assert plain["recovery"] == pytest.approx(0.1 / plain["forgotten"])
    out = robustness(before, after, baseline, resamples=500)
    assert out["intervals"]["forgotten"][0] <= 0 < out["intervals"]["forgotten"][1]
    assert out["recovery"] is None and out["intervals"]["recovery"] is None
    assert out["change"] == pytest.approx(-0.1)  # the FE change is still reported


def test_clear_forgetting_keeps_its_recovery_and_interval():
    before, baseline = _records([0.0, 0.1, 0.2, 0.1]), _records([0.8, 0.9, 1.0, 0.9])
    after = _records([0.4, 0.5, 0.6, 0.5])  # half-way back: recovery 0.5 in every resample
    out = robustness(before, after, baseline, resamples=200)
    assert out["intervals"]["forgotten"][0] > 0
    assert out["recovery"] == pytest.approx(0.5)
    assert out["intervals"]["recovery"] == pytest.approx((0.5, 0.5))
