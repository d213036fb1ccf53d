"""Quantisation attack: torchao's weight-only RTN against the formula worked by hand."""
from __future__ import annotations

import pytest
import torch

from unlearnlm.attacks.quantize import quantize_weights
from unlearnlm.errors import ConfigError


def _hand_rtn(w: torch.Tensor, bits: int, group: int) -> torch.Tensor:
    """Symmetric round-to-nearest per group: scale = max|w| / ((qmax - qmin) / 2), q = clamp(round(w / scale)).
    (w * (1 / scale), as torchao computes it: w / scale rounds differently at a few float ties.)"""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    g = w.reshape(-1, group)
    scale = g.abs().amax(dim=1, keepdim=True) / ((qmax - qmin) / 2)
    return (torch.clamp(torch.round(g * (1.0 / scale)), qmin, qmax) * scale).reshape(w.shape)


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(64, 8)
        self.odd = torch.nn.Linear(24, 8)  # 24 is not a multiple of the group size: left as it is
        self.lm_head = torch.nn.Linear(8, 16, bias=False)  # the output head stays in float


@pytest.mark.parametrize("bits", [4, 8])
def test_weights_match_hand_rtn_and_take_at_most_2_to_the_bits_values_per_group(bits):
    torch.manual_seed(0)
    model = _Tiny()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert quantize_weights(model, bits, group_size=32) == 1
    w = model.proj.weight
    assert type(w) is torch.nn.Parameter and w.dtype == torch.float32
    torch.testing.assert_close(w, _hand_rtn(before["proj.weight"], bits, 32), rtol=0, atol=0)
    assert max(len(torch.unique(g)) for g in w.reshape(-1, 32)) <= 2 ** bits
    assert not torch.equal(w, before["proj.weight"])
    for name in ("odd.weight", "lm_head.weight", "proj.bias"):
        assert torch.equal(dict(model.named_parameters())[name], before[name])


def test_a_worked_group_by_hand():
    # One group of 4 weights at 4 bits: max|w| = 1.5, scale = 1.5 / 7.5 = 0.2;
    # w / scale = [5, -2.5, 0.25, 7.5] -> round-half-even [5, -2, 0, 8] -> clamp to 7 -> x 0.2.
    lin = torch.nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -0.5, 0.05, 1.5]]))
    model = torch.nn.Sequential(lin)
    quantize_weights(model, 4, group_size=4)
    torch.testing.assert_close(model[0].weight, torch.tensor([[1.0, -0.4, 0.0, 1.4]]), rtol=0, atol=1e-6)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="2 to 8"):
        quantize_weights(_Tiny(), 1, 32)
    with pytest.raises(ConfigError, match="quant_group_size"):
        quantize_weights(torch.nn.Sequential(torch.nn.Linear(24, 2)), 4, 64)


@pytest.mark.real_model
def test_smollm2_at_4_bits_keeps_its_head_and_a_known_fact():
    """All 210 decoder Linear layers of SmolLM2-135M quantised (the tied head untouched), each
    group of 64 weights on at most 16 values, and the model still ranks Paris above Tokyo."""
    from unlearnlm.data.prompts import PromptFormat
    from unlearnlm.evaluation.likelihood import nll_means
    from unlearnlm.models.loading import load_model, load_tokenizer
    from unlearnlm.models.offline import prepare_offline_model

    path = str(prepare_offline_model("smollm2-135m"))
    model, tok = load_model(path).eval(), load_tokenizer(path)
    head = model.lm_head.weight.detach().clone()
    assert quantize_weights(model, 4, 64) == 210
    assert torch.equal(model.lm_head.weight, head) and model.lm_head.weight is model.model.embed_tokens.weight
    w = model.model.layers[3].mlp.down_proj.weight
    assert max(len(torch.unique(g)) for g in w.reshape(-1, 64)[:200]) <= 16
    right, wrong = nll_means(model, tok, PromptFormat.for_tokenizer(tok),
                             [("What is the capital of France?", "The capital of France is Paris."),
                              ("What is the capital of France?", "The capital of France is Tokyo.")],
                             batch_size=2, progress=False)
    assert right < wrong
