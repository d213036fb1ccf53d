"""benchmarks/eval_speed.py: the bf16-weights side of the issue-17 comparison and its precision labels."""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _module():
    sys.path.insert(0, str(REPO / "benchmarks"))  # eval_speed imports its sibling common.py
    spec = importlib.util.spec_from_file_location("eval_speed", REPO / "benchmarks" / "eval_speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["eval_speed"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _bench(module, now_precision: str, bf16: bool = False):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    args = types.SimpleNamespace(now_precision=now_precision)
    return module.Bench(args, model, None, None, "m", [], None, (), None, 16, bf16)


def test_now_weights_is_a_bf16_copy_and_leaves_the_previous_side_in_its_precision():
    module = _module()
    bench = _bench(module, "weights", bf16=True)
    now = module._now(bench)
    assert {p.dtype for p in now.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in bench.model.parameters()} == {torch.float32}  # the previous pipeline's model
    assert (now.precision, bench.precision) == ("bf16 weights", "bf16 autocast")
    assert now.bf16 is False  # no autocast on bf16 weights
    # the copy holds the same numbers, rounded to bf16
    w, w16 = bench.model[0].weight, now.model[0].weight
    assert torch.equal(w16, w.to(torch.bfloat16))


def test_now_same_is_the_bench_itself():
    module = _module()
    bench = _bench(module, "same")
    assert module._now(bench) is bench and bench.precision == "fp32"


def test_linear_flops_counts_two_in_out_per_token_row():
    module = _module()
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    counter = module.common.LinearFlops(model)
    model(torch.zeros(2, 5, 4))  # 10 token rows
    counter.remove()
    model(torch.zeros(1, 4))  # not counted after remove()
    assert counter.flops == 10 * (2 * 4 * 3 + 2 * 3 * 2)  # 10 x (24 + 12) = 360


def test_reference_nll_from_agrees_with_the_pipelines_reduction():
    """The previous pipeline's cross_entropy and today's chunked logsumexp give the same mean NLL
    on random logits with padding (positions the mask leaves out), chunk boundaries included."""
    from unlearnlm.evaluation.likelihood import AnswerLogits, _nll_from

    module = _module()
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g) * 4
    keep = torch.tensor([[1, 1, 1, 1, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    targets = torch.randint(0, 11, (3, 5), generator=g)
    answer = AnswerLogits(logits, keep.nonzero(as_tuple=True), targets[keep])
    want = module.reference_nll_from(answer, 3)
    assert _nll_from(answer, 3, chunk=4) == pytest.approx(want, abs=1e-6)
    # and both against the definition, example 1: its single token
    assert want[1] == pytest.approx(float(torch.logsumexp(logits[1, 0], 0) - logits[1, 0, targets[1, 0]]), abs=1e-6)
