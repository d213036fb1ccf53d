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
