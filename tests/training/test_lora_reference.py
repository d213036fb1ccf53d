"""Under LoRA the reference model is the policy's own base (adapter disabled): no second copy."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoModelForCausalLM

from unlearnlm.config.schema import TrainConfig
from unlearnlm.methods.context import output_head
from unlearnlm.training import unlearn
from unlearnlm.training.lora import BaseModelReference, with_lora


@pytest.fixture()
def lora_model(tiny_model_dir):
    """A tiny model under LoRA whose adapter is non-zero (peft starts B at 0: policy == base)."""
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = with_lora(base, dataclasses.replace(TrainConfig(), lora_r=4, lora_dropout=0.1))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.train()
    return model


def test_base_model_reference_computes_the_model_before_the_adapter(lora_model, tiny_model_dir):
    ids = torch.tensor([[5, 9, 14, 3, 7, 11]])
    mask = torch.ones_like(ids)
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        want = original(input_ids=ids, attention_mask=mask).logits
        policy = lora_model.eval()(input_ids=ids, attention_mask=mask).logits
    lora_model.train()
    ref = BaseModelReference(lora_model)
    got = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert (policy - want).abs().max() > 1e-2  # the adapter changes the policy ...
    torch.testing.assert_close(got.logits, want, atol=1e-5, rtol=1e-5)  # ... and the reference is the base
    assert not got.logits.requires_grad
    # the head alone (the chunked loss applies it to hidden states) is the base head too
    torch.testing.assert_close(output_head(ref)(got.hidden_states[-1]), want, atol=1e-5, rtol=1e-5)
    # the policy is left as it was: training mode, adapter on, gradients flowing
    assert lora_model.training
    out = lora_model(input_ids=ids, attention_mask=mask).logits
    assert out.requires_grad
    lora_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(lora_model(input_ids=ids, attention_mask=mask).logits, policy)


def test_lora_unlearning_with_a_reference_method_loads_one_model(tiny_model_dir, tmp_path, monkeypatch):
    """NPO+KL under LoRA: the model is loaded once, the log says the base is the reference, and
    the trained model differs from the start (the reference is not the moving policy)."""
    from unlearnlm.config import load_config

    loads = []
    original_load = unlearn.load_model

    def counting_load(path, *a, **k):
        loads.append(str(path))
        return original_load(path, *a, **k)

    monkeypatch.setattr(unlearn, "load_model", counting_load)
    cfg = load_config("demo", [f"model.cache_dir={tmp_path / 'cache'}", "unlearn.train.epochs=1",
                               "unlearn.train.batch_size=20", "unlearn.train.lr=1e-2", "unlearn.train.bf16=false",
                               "unlearn.train.lora=true", "unlearn.train.lora_r=4"])
    out = tmp_path / "npo_kl"
    manifest = unlearn.unlearn_model(cfg, "NPO+KL", tiny_model_dir, out)
    assert loads == [str(tiny_model_dir)]  # the policy only: no frozen copy
    assert manifest["ref_model"] == str(tiny_model_dir)
    merged = AutoModelForCausalLM.from_pretrained(out)
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert any(not torch.equal(p, q) for p, q in zip(merged.parameters(), start.parameters()))
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in manifest["log_history"] if "loss" in h)


def test_the_adapter_initialisation_comes_from_the_seed(tiny_model_dir):
    """Two wraps with one seed draw the same LoRA A matrices, another seed others, and the global
    random state is left as it was (so every FSDP process starts from the same adapter)."""
    def adapter(seed: int) -> dict:
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        model = with_lora(base, dataclasses.replace(TrainConfig(), seed=seed))
        return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n}

    torch.manual_seed(123)
    first = adapter(0)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after)  # with_lora did not consume the global generator
    torch.manual_seed(7)  # a different global state: the adapter still comes from seed 0
    again, other = adapter(0), adapter(1)
    assert first.keys() == again.keys() and len(first) > 0
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
