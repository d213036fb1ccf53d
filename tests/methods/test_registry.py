"""Method names, declared parts and reference needs, LossContext caching, one step per method."""
from __future__ import annotations

import copy
import dataclasses
import re
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
    """A bigram "LM" that records the input_ids tensor of every forward. Asked for hidden states,
    it returns three (embeddings, "layer 0", final), like a 2-layer HF model: RMU uses layer 0."""

    config = SimpleNamespace(get_text_config=lambda: SimpleNamespace(num_hidden_layers=2, hidden_size=VOCAB))

    def __init__(self):
        super().__init__()
        self.table = nn.Embedding(VOCAB, VOCAB)
        self.calls: list[torch.Tensor] = []

    def forward(self, input_ids, attention_mask=None, output_hidden_states=False):
        self.calls.append(input_ids)
        logits = self.table(input_ids)
        hidden = (logits, torch.tanh(logits), logits) if output_hidden_states else None
        return SimpleNamespace(logits=logits, hidden_states=hidden)


CFG = LossConfig(pdu_eps=0.1)  # PDU's DUAL requires eps


def context(method, model, batch, ref=None) -> LossContext:
    """A step's context with the method's state (RMU's c and layer, PDU's lambda)."""
    return LossContext(model, batch, ref, method.init_state(model, CFG, 0), method.needs_hidden)


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
    """One row per forget loss, regulariser and full method, each with its paper, and the
    non-default method options named."""
    rows = describe_methods()
    kinds = {"forget loss": FORGET_LOSSES, "regulariser": REGULARISERS, "method": FULL_METHODS}
    assert [(k, n) for k, n, _ in rows] == [(k, n) for k, reg in kinds.items() for n in reg.names()]
    assert all(line and "\n" not in line and "[" in line for *_, line in rows)
    simnpo = next(line for _, n, line in rows if n == "SimNPO")
    assert "arXiv 2410.07163" in simnpo and "forget_coeff=0.125" in simnpo


def test_full_method_names_win_and_their_forget_loss_alone_is_plus_none():
    assert get_method("RMU").regulariser is REGULARISERS.get("ACT")
    assert get_method("RMU+none").regulariser is None and get_method("RMU+none").name == "RMU+none"
    assert get_method("PDU").regulariser is REGULARISERS.get("DUAL")
    assert "RMU+none" in all_method_names() and all_method_names().count("RMU") == 1


@pytest.mark.parametrize("override, message", [
    ("unlearn.beta=0", "unlearn.beta: must be > 0"),
    ("unlearn.me_direction=p_p", "unlearn.me_direction: must be p_u"),
    ("unlearn.simnpo_beta=-1", "unlearn.simnpo_beta: must be > 0"),
    ("unlearn.satimp_beta2=-1", "unlearn.satimp_beta2: must be >= 0"),
    ("unlearn.trainable=(", "unlearn.trainable: must be a valid regular expression"),
    ("unlearn.per_method={GA+GD: {wga_beta: -2}}", "unlearn.per_method.GA+GD.wga_beta: must be >= 0"),
    ("methods=[PDU]", "unlearn.pdu_eps: PDU needs it set"),
])
def test_loss_option_validation(override, message):
    from unlearnlm.config import load_config

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("demo", [override])


# ---- declared needs match what the losses use ---------------------------------------

@pytest.mark.parametrize("name", all_method_names())
def test_declared_parts_and_ref_are_sufficient_and_necessary(name):
    method = get_method(name)
    model, ref = models()
    method.loss(context(method, model, make_batch(method.parts), ref if method.needs_ref else None), CFG)
    for missing in method.parts:
        with pytest.raises(KeyError, match=missing):
            method.loss(context(method, model, make_batch(method.parts - {missing}), ref), CFG)
    if method.needs_ref:
        with pytest.raises(RuntimeError, match="reference model"):
            method.loss(context(method, model, make_batch(method.parts)), CFG)
    if method.init_state(model, CFG, 0):
        with pytest.raises(RuntimeError, match="method state"):
            method.loss(LossContext(model, make_batch(method.parts), ref), CFG)


@pytest.mark.parametrize("name", all_method_names())
def test_each_part_is_forwarded_once_per_model(name):
    method = get_method(name)
    model, ref = models()
    batch = make_batch()
    method.loss(context(method, model, batch, ref), CFG)
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


def test_llmu_puts_its_mismatch_term_in_the_regulariser_as_the_reference_code_does():
    """LLMU, forget_coeff 0.5, reg_coeff 3: total = 0.5 * (-NLL(forget)) + 3 * (NLL(mismatch) + KL(retain));
    KL is 0 against an identical reference. So only with forget_coeff = reg_coeff does it equal
    the old split (GA + mismatch) + KL."""
    model, ref = models()
    batch = make_batch()
    total, logs = get_method("LLMU").loss(LossContext(model, batch, ref), LossConfig(), 0.5, 3.0)
    nll = {p: losses.mean_nll(model.table(batch[p]["input_ids"]), batch[p]["labels"]).item()
           for p in ("forget", "forget_mismatch")}
    assert logs["forget_loss"] == pytest.approx(-nll["forget"])
    assert logs["reg_loss"] == pytest.approx(nll["forget_mismatch"], abs=1e-6)
    assert total.item() == pytest.approx(-0.5 * nll["forget"] + 3.0 * nll["forget_mismatch"], abs=1e-5)


@pytest.mark.parametrize("name", all_method_names())
def test_one_sgd_step_lowers_total_loss(name):
    """WGA's and SatImp's loss re-weights itself by the model's own p, so a step is checked on its
    aim, the forget NLL rising (with the regulariser off, as their weights make L_F small)."""
    method = get_method(name)
    model, ref = models()
    batch = make_batch()
    # At this random model's NLL (~2, p ~ 0.1) SimNPO's beta 4.5 saturates and SatImp's p^5 weight
    # is ~1e-5: a 1e-2 SGD step would move neither in float32.
    cfg = dataclasses.replace(CFG, simnpo_beta=0.5, satimp_beta1=1.0)
    self_weighted = method.forget in (FORGET_LOSSES.get("WGA"), FORGET_LOSSES.get("SatImp"))
    reg_coeff = 0.0 if self_weighted else 1.0

    def measure(total):
        return -losses.mean_nll(model.table(batch["forget"]["input_ids"]), batch["forget"]["labels"]).item() \
            if self_weighted else total.item()

    state = method.init_state(model, cfg, 0)
    total, _ = method.loss(LossContext(model, batch, ref, state), cfg, 1.0, reg_coeff)
    assert torch.isfinite(total)
    before_value = measure(total)
    total.backward()
    with torch.no_grad():
        before = model.table.weight.clone()
        model.table.weight -= 1e-2 * model.table.weight.grad
    assert not torch.equal(before, model.table.weight)
    after, _ = method.loss(LossContext(model, batch, ref, state), cfg, 1.0, reg_coeff)
    assert measure(after) < before_value
