"""Method names, declared parts and reference needs, LossContext caching, one step per method."""
from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from unlearnlm.errors import ConfigError
from unlearnlm.methods import (
    FORGET_LOSSES,
    FULL_METHODS,
    REGULARISERS,
    LossConfig,
    LossContext,
    all_method_names,
    describe_methods,
    get_method,
)
from unlearnlm.methods import losses

VOCAB = 7
ALL_PARTS = ("forget", "forget_idk", "forget_mismatch", "retain", "retain_idk")


class CountingLM(nn.Module):
    """A bigram "LM" that records the input_ids tensor of every forward."""

    def __init__(self):
        super().__init__()
        self.table = nn.Embedding(VOCAB, VOCAB)
        self.calls: list[torch.Tensor] = []

    def forward(self, input_ids, attention_mask=None):
        self.calls.append(input_ids)
        return SimpleNamespace(logits=self.table(input_ids))


def make_batch(parts=ALL_PARTS) -> dict:
    g = torch.Generator().manual_seed(0)
    batch = {}
    for name in parts:
        input_ids = torch.randint(0, VOCAB, (2, 6), generator=g)
        attention_mask = torch.ones(2, 6, dtype=torch.long)
        attention_mask[1, 4:] = 0  # right padding
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        labels[:, :2] = -100  # the "question"
        batch[name] = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    return batch


def models():
    torch.manual_seed(0)
    model = CountingLM()
    ref = copy.deepcopy(model)
    return model, ref


# ---- names ---------------------------------------------------------------------------

def test_every_combination_is_listed():
    names = set(all_method_names())
    forget, regs = FORGET_LOSSES.names(), REGULARISERS.names()
    assert {f"{f}+{r}" for f in forget for r in regs} <= names
    assert set(forget) <= names and set(FULL_METHODS.names()) <= names
    assert len(names) == len(all_method_names())  # no duplicates


@pytest.mark.parametrize("name", all_method_names())
def test_every_method_parses(name):
    method = get_method(name)
    assert method.name == name
    assert method.parts <= set(ALL_PARTS)
    assert method.description and "\n" not in method.description


def test_parts_and_reference_needs():
    assert not get_method("ME+GD").needs_ref
    assert get_method("ME+GD").parts == {"forget", "retain"}
    assert get_method("NPO+GD").needs_ref
    assert get_method("ME+KL").needs_ref
    idk_ap = get_method("IDK+AP")
    assert idk_ap.parts == {"forget_idk", "retain", "retain_idk"} and not idk_ap.needs_ref
    assert get_method("DPO").parts == {"forget", "forget_idk"}
    llmu = get_method("LLMU")
    assert llmu.parts == {"forget", "forget_mismatch", "retain"} and llmu.needs_ref


def test_forget_loss_alone_or_plus_none_has_no_regulariser():
    assert get_method("GA").regulariser is None
    assert get_method("GA+none").name == "GA"
    assert get_method("GA+none").parts == {"forget"}


@pytest.mark.parametrize(
    "name, hint",
    [("ME+GX", "did you mean 'GD'"), ("NPo+GD", "did you mean 'NPO'"),
     ("me", "did you mean 'ME'"), ("LLMu", "did you mean 'LLMU'"), ("XYZ", "forget loss")],
)
def test_unknown_names_suggest(name, hint):
    with pytest.raises(ConfigError, match=hint):
        get_method(name)


def test_describe_methods_rows():
    rows = describe_methods()
    assert [n for n, _ in rows] == all_method_names()
    assert all(d and "\n" not in d for _, d in rows)


@pytest.mark.parametrize("kwargs, field", [
    ({"beta": 0}, "beta"), ({"beta": -0.1}, "beta"), ({"beta": math.nan}, "beta"),
    ({"me_direction": "p_p"}, "me_direction"),
])
def test_loss_config_validation(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        LossConfig(**kwargs)


# ---- declared needs match what the losses use ---------------------------------------

@pytest.mark.parametrize("name", all_method_names())
def test_declared_parts_and_ref_are_sufficient_and_necessary(name):
    method = get_method(name)
    model, ref = models()
    method.loss(LossContext(model, make_batch(method.parts), ref if method.needs_ref else None),
                LossConfig())
    for missing in method.parts:
        with pytest.raises(KeyError, match=missing):
            method.loss(LossContext(model, make_batch(method.parts - {missing}), ref), LossConfig())
    if method.needs_ref:
        with pytest.raises(RuntimeError, match="reference model"):
            method.loss(LossContext(model, make_batch(method.parts)), LossConfig())


@pytest.mark.parametrize("name", all_method_names())
def test_each_part_is_forwarded_once_per_model(name):
    method = get_method(name)
    model, ref = models()
    batch = make_batch()
    method.loss(LossContext(model, batch, ref), LossConfig())
    for part in ALL_PARTS:
        used = int(part in method.parts)
        assert sum(x is batch[part]["input_ids"] for x in model.calls) == used
        assert sum(x is batch[part]["input_ids"] for x in ref.calls) <= used
    assert (len(ref.calls) > 0) == method.needs_ref


def test_context_caches_and_ref_has_no_grad():
    model, ref = models()
    ctx = LossContext(model, make_batch(), ref)
    assert ctx.logits("forget") is ctx.logits("forget")
    assert ctx.ref_logits("forget") is ctx.ref_logits("forget")
    assert len(model.calls) == len(ref.calls) == 1
    assert ctx.logits("forget").requires_grad and not ctx.ref_logits("forget").requires_grad
    with pytest.raises(RuntimeError, match="ref_model=None"):
        LossContext(model, make_batch()).ref_logits("forget")


# ---- combination and one training step ----------------------------------------------

def test_total_is_weighted_sum():
    """IDK+GD with forget_coeff 0.3, reg_coeff 2: total = 0.3 * NLL_mean(idk) + 2 * NLL_mean(retain)."""
    model, _ = models()
    batch = make_batch()
    total, logs = get_method("IDK+GD").loss(LossContext(model, batch), LossConfig(), 0.3, 2.0)
    logits = {p: model.table(batch[p]["input_ids"]) for p in ("forget_idk", "retain")}
    f = losses.mean_nll(logits["forget_idk"], batch["forget_idk"]["labels"]).item()
    r = losses.mean_nll(logits["retain"], batch["retain"]["labels"]).item()
    assert logs["forget_loss"] == pytest.approx(f) and logs["reg_loss"] == pytest.approx(r)
    assert total.item() == pytest.approx(0.3 * f + 2.0 * r)
    _, logs = get_method("GA").loss(LossContext(model, batch), LossConfig(), 1.0, 1.0)
    assert logs["reg_loss"] == 0.0


@pytest.mark.parametrize("name", all_method_names())
def test_one_sgd_step_lowers_total_loss(name):
    method = get_method(name)
    model, ref = models()
    batch, cfg = make_batch(), LossConfig()
    total, _ = method.loss(LossContext(model, batch, ref), cfg)
    assert torch.isfinite(total)
    total.backward()
    with torch.no_grad():
        before = model.table.weight.clone()
        model.table.weight -= 1e-2 * model.table.weight.grad
    assert not torch.equal(before, model.table.weight)
    after, _ = method.loss(LossContext(model, batch, ref), cfg)
    assert after.item() < total.item()
