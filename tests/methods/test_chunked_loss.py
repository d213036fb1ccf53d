"""unlearn.loss_chunk_size: every registered method's loss and gradients without the full logits."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from unlearnlm.methods import LossConfig, LossContext, all_method_names, get_method
from unlearnlm.methods import losses

VOCAB, DIM = 11, 5
CFG = LossConfig(pdu_eps=0.1)


class HeadLM(nn.Module):
    """A 1-layer LM with a separate output head, as HF models have: hidden states (embeddings,
    after layer 0, final normed) and ``logits_to_keep``."""

    def __init__(self, cap: float | None = None, bias: bool = False):
        super().__init__()
        self.config = SimpleNamespace(final_logit_softcapping=cap,
                                      get_text_config=lambda: SimpleNamespace(num_hidden_layers=2, hidden_size=DIM))
        self.embed = nn.Embedding(VOCAB, DIM)
        self.layer = nn.Linear(DIM, DIM)
        self.lm_head = nn.Linear(DIM, VOCAB, bias=bias)
        self.calls = 0

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids, attention_mask=None, output_hidden_states=False, logits_to_keep=0):
        self.calls += 1
        h0 = self.embed(input_ids)
        h1 = torch.tanh(self.layer(h0)) + h0
        h2 = 2.0 * h1  # the "final norm"
        logits = self.lm_head(h2[:, -logits_to_keep:] if logits_to_keep else h2)
        if self.config.final_logit_softcapping:
            cap = self.config.final_logit_softcapping
            logits = torch.tanh(logits / cap) * cap
        return SimpleNamespace(logits=logits, hidden_states=(h0, h1, h2) if output_hidden_states else None)


def make_batch() -> dict:
    g = torch.Generator().manual_seed(0)
    batch = {}
    for name in ("forget", "forget_idk", "forget_mismatch", "retain", "retain_idk"):
        input_ids = torch.randint(0, VOCAB, (3, 7), generator=g)
        attention_mask = torch.ones(3, 7, dtype=torch.long)
        attention_mask[1, 5:] = 0
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        labels[:, :2] = -100
        batch[name] = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    return batch


class WrappedHead(nn.Module):
    """An output head that is not a plain nn.Linear (as an adapter-wrapped head is)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear

    def forward(self, h):
        return self.linear(h)


def _loss_and_grads(name: str, chunk: int, cap: float | None = None, bias: bool = False, head: str = "linear"):
    torch.manual_seed(0)
    model = HeadLM(cap, bias)
    if head == "tied":
        model.lm_head.weight = model.embed.weight = nn.Parameter(torch.randn(VOCAB, DIM))
    elif head == "wrapped":
        model.lm_head = WrappedHead(model.lm_head)
    ref = copy.deepcopy(model)
    with torch.no_grad():  # a reference that differs from the policy, so KL and NPO are not at their minimum
        for p in ref.parameters():
            p.add_(0.3 * torch.randn_like(p))
    method = get_method(name)
    ctx = LossContext(model, make_batch(), ref, method.init_state(model, CFG, 0), method.needs_hidden,
                      chunk_size=chunk)
    total, _ = method.loss(ctx, CFG, 1.0, 1.0)
    total.backward()
    return total.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", all_method_names())
def test_chunked_loss_and_gradients_equal_the_full_logits(name):
    full, full_grads = _loss_and_grads(name, 0)
    chunked, chunked_grads = _loss_and_grads(name, 4)  # 4 positions per chunk: several chunks per part
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-6)
    assert chunked_grads.keys() == full_grads.keys()
    for key in full_grads:
        torch.testing.assert_close(chunked_grads[key], full_grads[key], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["ME+KL", "UNDIAL+GD", "NPO+GD", "CEU+GD", "PDU"])
def test_a_head_with_a_bias_too(name):
    """The chunks apply the model's own head module, bias included."""
    full, grads = _loss_and_grads(name, 0, bias=True)
    chunked, chunked_grads = _loss_and_grads(name, 4, bias=True)
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-6)
    assert chunked_grads.keys() == grads.keys() and "lm_head.bias" in grads
    for key in grads:
        torch.testing.assert_close(chunked_grads[key], grads[key], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["ME+KL", "UNDIAL+GD", "NPO+GD"])
def test_soft_capped_heads_too(name):
    full, grads = _loss_and_grads(name, 0, cap=2.0)
    chunked, chunked_grads = _loss_and_grads(name, 3, cap=2.0)
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-6)
    for key in grads:
        torch.testing.assert_close(chunked_grads[key], grads[key], rtol=1e-4, atol=1e-6)


def test_the_context_path_equals_the_loss_definitions():
    """ME, KL, UNDIAL, CE-U and PDU go through LossContext.per_position; their values equal the
    full-logit definitions of losses.py (tested by hand in test_losses.py)."""
    torch.manual_seed(0)
    model, ref = HeadLM(), HeadLM()
    batch = make_batch()
    f, r = batch["forget"], batch["retain"]
    z = model(f["input_ids"]).logits
    z_ref = ref(f["input_ids"]).logits
    expected = {
        "ME": losses.me_loss(z, f["labels"], CFG.me_direction),
        "UNDIAL": losses.undial_loss(z, z_ref, f["labels"], CFG.undial_beta),
        "CEU": losses.ceu_loss(z, f["labels"], CFG.ceu_ignore_first),
        "PDU": losses.flatten_loss(z, f["labels"]),
        "KL": losses.kl_regulariser(model(r["input_ids"]).logits, ref(r["input_ids"]).logits, r["attention_mask"]),
    }
    for name, value in expected.items():
        method = get_method(name if name != "KL" else "GA+KL")
        spec = method.regulariser if name == "KL" else method.forget
        for chunk in (0, 2):
            ctx = LossContext(model, batch, ref, method.init_state(model, CFG, 0), chunk_size=chunk)
            torch.testing.assert_close(spec.fn(ctx, CFG), value, rtol=1e-5, atol=1e-6)


def test_chunked_context_never_forms_full_logits_and_forwards_once():
    model, ref = HeadLM(), HeadLM()
    ctx = LossContext(model, make_batch(), ref, chunk_size=4)
    with pytest.raises(RuntimeError, match="loss_chunk_size"):
        ctx.logits("forget")
    nll, mask = ctx.token_nll("forget")
    ctx.token_nll("forget")
    assert model.calls == 1 and nll.shape == mask.shape == (3, 6) and (nll[~mask] == 0).all()


def test_a_real_hf_model_chunked(tiny_model_dir):
    """logits_to_keep and the last hidden state are what a transformers model computes its logits from."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :3] = -100
    part = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    batch = {"forget": part, "retain": part}
    method = get_method("ME+KL")
    values = []
    for chunk in (0, 5):
        ctx = LossContext(model, batch, copy.deepcopy(model), chunk_size=chunk)
        values.append(method.loss(ctx, CFG, 1.0, 1.0)[0])
        assert torch.isfinite(values[-1])
    torch.testing.assert_close(values[1], values[0], rtol=1e-5, atol=1e-6)
    full_nll = LossContext(model, batch).token_nll("forget")[0]
    torch.testing.assert_close(LossContext(model, batch, chunk_size=4).token_nll("forget")[0], full_nll,
                               rtol=1e-5, atol=1e-5)


def test_a_negative_chunk_size_is_a_config_error():
    from unlearnlm.config import load_config
    from unlearnlm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unlearn.loss_chunk_size: must be >= 0, got -1"):
        load_config("demo", ["unlearn.loss_chunk_size=-1"])


@pytest.mark.parametrize("head", ["tied", "wrapped"])
@pytest.mark.parametrize("name", ["ME+GD", "NPO+KL", "UNDIAL+GD"])
def test_tied_and_wrapped_heads_too(name, head):
    """A head tied to the input embedding sums both gradients; a head that is not a plain
    nn.Linear takes the checkpointed path. Both equal the full logits."""
    full, grads = _loss_and_grads(name, 0, head=head)
    chunked, chunked_grads = _loss_and_grads(name, 4, head=head)
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-6)
    assert chunked_grads.keys() == grads.keys()
    for key in grads:
        torch.testing.assert_close(chunked_grads[key], grads[key], rtol=1e-4, atol=1e-6)


def test_a_plain_linear_head_accumulates_one_weight_gradient():
    """The fused path's backward allocates the head's V x d weight gradient once, not once per
    chunk: counted by the V x d tensors the backward's ops allocate (views, in-place ops and the
    input embedding's own gradient aside)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountVxD(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.created = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func._schema.name.split("::")[-1]
            allocates = not name.endswith("_") and name not in ("t", "detach", "embedding_dense_backward")
            if isinstance(out, torch.Tensor) and tuple(out.shape) == (VOCAB, DIM) and allocates:
                self.created += 1
            return out

    counts = {}
    for head in ("linear", "wrapped"):
        torch.manual_seed(0)
        model = HeadLM()
        if head == "wrapped":
            model.lm_head = WrappedHead(model.lm_head)
        ctx = LossContext(model, make_batch(), chunk_size=2)  # 6 chunks of the 11 supervised positions
        nll, mask = ctx.token_nll("forget")
        loss = nll.sum()
        with CountVxD() as mode:
            loss.backward()
        counts[head] = mode.created
    assert counts["linear"] == 1 and counts["wrapped"] >= 6, counts  # checkpointed: one or more per chunk


@pytest.mark.parametrize("name", ["ME+KL", "NPO+GD"])
def test_a_soft_capped_gemma3_chunked(name):
    """Gemma-3's final soft-capping is applied to each chunk as its own forward applies it."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=128,
                              final_logit_softcapping=5.0)
    model = Gemma3ForCausalLM(config).eval()
    ids = torch.randint(0, 300, (2, 9), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :3] = -100
    part = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    method = get_method(name)
    values = [method.loss(LossContext(model, {"forget": part, "retain": part}, copy.deepcopy(model), chunk_size=c),
                          CFG, 1.0, 1.0)[0] for c in (0, 4)]
    torch.testing.assert_close(values[1], values[0], rtol=1e-5, atol=1e-6)
