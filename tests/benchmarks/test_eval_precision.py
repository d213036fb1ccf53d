"""benchmarks/eval_precision.py's comparison of an fp32 and a bf16 evaluation, on fixed records."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("eval_precision", REPO / "benchmarks" / "eval_precision.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_differences_count_changed_generations_and_rank_the_mean_differences():
    differences = _module().differences

    def evaluation(gens, rouge, prob, fe):
        records = {"forget": [{"generation": g} for g in gens]}
        return {"sets": {"forget": {"rouge": rouge, "probability": prob}},
                "aggregates": {"forget_efficacy": fe, "model_utility": None}}, records

    fp32 = evaluation(["a", "b", "c"], 0.50, 0.900, 0.40)
    bf16 = evaluation(["a", "B", "c"], 0.47, 0.905, 0.41)
    changed, total, diffs = differences(fp32, bf16)
    assert (changed, total) == (1, 3)  # one of three generations differs
    # bf16 - fp32: rouge 0.47 - 0.50 = -0.03, FE 0.41 - 0.40 = +0.01, probability +0.005; MU None: skipped
    assert [name for name, _ in diffs] == ["forget rouge", "forget_efficacy", "forget probability"]
    assert [d for _, d in diffs] == pytest.approx([-0.03, 0.01, 0.005], abs=1e-12)


def test_largest_per_question_difference_spans_every_set():
    largest = _module().largest_per_question
    fp32 = {"forget": [{"probability": 0.5}, {"probability": 0.2}], "retain": [{"probability": 0.9}]}
    bf16 = {"forget": [{"probability": 0.52}, {"probability": 0.2}], "retain": [{"probability": 0.85}]}
    assert largest(fp32, bf16, "probability") == pytest.approx(0.05)  # |0.85 - 0.9| beats |0.52 - 0.5|
