"""The newer baselines' losses against values worked out by hand (the arithmetic is in each
docstring), their gradient directions, and the state that lives across steps (RMU, PDU)."""
from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from unlearnlm.config.schema import LossConfig
from unlearnlm.methods import LossContext, get_method, losses

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def two_token_case():
    """V=2, logits [0, ln 3] at every position -> p(0) = 1/4, p(1) = 3/4.
    labels [-100, 1, 0]: targets 1 (p 3/4, l = ln 4/3) and 0 (p 1/4, l = ln 4)."""
    logits = torch.tensor([[0.0, LN3]] * 3).unsqueeze(0).requires_grad_()
    labels = torch.tensor([[-100, 1, 0]])
    return logits, labels


# ---- SimNPO ----------------------------------------------------------------------------

def test_simnpo_by_hand():
    """NLL_sum [2, 3], |y| [2, 1] -> NLL_avg [1, 3]; beta 2, gamma 1 -> arguments 2*1-1 = 1 and
    2*3-1 = 5; loss = -(2/2) * (log sig(1) + log sig(5)) / 2."""
    value = losses.simnpo_loss(torch.tensor([2.0, 3.0]), torch.tensor([2, 1]), beta=2.0, gamma=1.0)
    assert value.item() == pytest.approx(-(log_sigmoid(1) + log_sigmoid(5)) / 2, rel=1e-6)


def test_simnpo_gamma_is_not_scaled_by_beta():
    """NLL_avg 1, beta 4, gamma 2: the paper's log sig(4*1 - 2) = log sig(2), not OpenUnlearning's
    log sig(4*(1 - 2)) = log sig(-4). loss = -(2/4) log sig(2)."""
    value = losses.simnpo_loss(torch.tensor([1.0]), torch.tensor([1]), beta=4.0, gamma=2.0)
    assert value.item() == pytest.approx(-0.5 * log_sigmoid(2), rel=1e-6)


def test_simnpo_registered_uses_length_normalised_nll():
    """Uniform logits over V=2: every target costs ln 2, so NLL_avg = ln 2 for rows of 3 and 1
    targets alike; loss = -(2/beta) log sig(beta ln 2 - gamma)."""
    logits = torch.zeros(2, 4, 2)
    labels = torch.tensor([[-100, 1, 0, 1], [-100, -100, 1, -100]])
    ctx = LossContext(FixedLM(logits), {"forget": part(labels)})
    cfg = LossConfig(simnpo_beta=2.0, simnpo_gamma=0.5)
    value = get_method("SimNPO").forget.fn(ctx, cfg)
    assert value.item() == pytest.approx(-(2 / 2) * log_sigmoid(2 * LN2 - 0.5), rel=1e-6)


def test_simnpo_gradient_raises_the_nll():
    """d loss / d NLL_sum < 0: descending the loss raises the forget NLL."""
    nll = torch.tensor([2.0, 5.0], requires_grad=True)
    losses.simnpo_loss(nll, torch.tensor([4, 4]), beta=4.5, gamma=0.0).backward()
    assert (nll.grad < 0).all()


# ---- WGA, SatImp ----------------------------------------------------------------------

def test_wga_by_hand():
    """beta 1: w = p = [3/4, 1/4]; loss = -(3/4 ln 4/3 + 1/4 ln 4) / 2 targets."""
    logits, labels = two_token_case()
    expected = -(0.75 * math.log(4 / 3) + 0.25 * LN4) / 2
    assert losses.wga_loss(logits, labels, beta=1.0).item() == pytest.approx(expected, rel=1e-6)


def test_wga_beta_zero_is_gradient_ascent():
    """p^0 = 1: WGA with beta 0 is GA."""
    logits, labels = two_token_case()
    torch.testing.assert_close(losses.wga_loss(logits, labels, 0.0), losses.ga_loss(logits, labels))


def test_satimp_by_hand():
    """beta1 5, beta2 1: w = p^5 (1-p) = [(3/4)^5 * 1/4, (1/4)^5 * 3/4];
    loss = -(w1 ln 4/3 + w2 ln 4) / 2."""
    logits, labels = two_token_case()
    w1, w2 = 0.75**5 * 0.25, 0.25**5 * 0.75
    expected = -(w1 * math.log(4 / 3) + w2 * LN4) / 2
    assert losses.satimp_loss(logits, labels, 5.0, 1.0).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("loss_fn, weight", [
    (lambda lg, lb: losses.wga_loss(lg, lb, 1.0), lambda p: p),
    (lambda lg, lb: losses.satimp_loss(lg, lb, 5.0, 1.0), lambda p: p**5 * (1 - p)),
], ids=["WGA", "SatImp"])
def test_token_weights_are_detached_and_descent_lowers_the_true_token(loss_fn, weight):
    """The gradient is that of -(1/N) sum w_t l_t with w_t held constant. Since -l_t = log p_true
    and d log p_true / dz_true = 1 - p_true > 0, the gradient at the true token is positive:
    descent lowers it (position 0 predicts token 1, position 1 token 0)."""
    logits, labels = two_token_case()
    loss_fn(logits, labels).backward()
    manual = logits.detach().clone().requires_grad_()
    nll, mask = losses.token_nll(manual, labels)
    w = weight(torch.exp(-nll.detach()))
    (-(w * nll * mask).sum() / mask.sum()).backward()
    torch.testing.assert_close(logits.grad, manual.grad)
    assert logits.grad[0, 0, 1] > 0 and logits.grad[0, 1, 0] > 0


# ---- UNDIAL, CE-U ---------------------------------------------------------------------

def test_undial_by_hand():
    """V=3, ref logits 0, true token 0, beta ln 4: q = softmax([-ln 4, 0, 0]) = [1/9, 4/9, 4/9].
    Policy logits [ln 2, 0, 0]: p = [1/2, 1/4, 1/4].
    CE = -(1/9 ln 1/2 + 8/9 ln 1/4) = 1/9 ln 2 + 16/9 ln 2 = 17/9 ln 2."""
    logits = torch.tensor([[[LN2, 0.0, 0.0], [5.0, -3.0, 1.0]]], requires_grad=True)  # position 1: no target
    ref = torch.zeros(1, 2, 3)
    labels = torch.tensor([[-100, 0]])
    value = losses.undial_loss(logits, ref, labels, beta=LN4)
    assert value.item() == pytest.approx(17 / 9 * LN2, rel=1e-6)
    value.backward()
    # dCE/dz = p - q: at the true token 1/2 - 1/9 > 0, so descent lowers it; nothing at position 1
    torch.testing.assert_close(logits.grad[0, 0], torch.tensor([1 / 2 - 1 / 9, 1 / 4 - 4 / 9, 1 / 4 - 4 / 9]))
    assert logits.grad[0, 1].abs().sum() == 0


def test_ceu_by_hand():
    """V=3, true token 0 at both target positions.
    position 0: logits 0 -> p = 1/3 each, q = [0, 1/2, 1/2]: CE = ln 3
    position 1: logits [ln 2, 0, 0] -> p = [1/2, 1/4, 1/4], q = [0, 1/2, 1/2]: CE = ln 4
    ignore_first skips position 0 (it predicts the first answer token): ln 4; else (ln 3 + ln 4)/2."""
    logits = torch.tensor([[[0.0, 0.0, 0.0], [LN2, 0.0, 0.0], [9.0, 9.0, 9.0]]], requires_grad=True)
    labels = torch.tensor([[-100, 0, 0]])
    assert losses.ceu_loss(logits, labels, ignore_first=True).item() == pytest.approx(LN4, rel=1e-6)
    assert losses.ceu_loss(logits, labels, ignore_first=False).item() == pytest.approx((LN3 + LN4) / 2, rel=1e-6)
    losses.ceu_loss(logits, labels, ignore_first=True).backward()
    # dCE/dz = p - q with q detached: p_true - 0 = 1/2 > 0 at the true token (descent lowers it)
    torch.testing.assert_close(logits.grad[0, 1], torch.tensor([1 / 2, 1 / 4 - 1 / 2, 1 / 4 - 1 / 2]))


# ---- PDU's flattening loss and its dual variable ----------------------------------------

def test_flatten_by_hand():
    """Logits [3, 0, 0]: max 3, mean 1, gap 2 -> 4; logits [1, 1, 1]: gap 0 -> 0; mean 2.
    The third position has no target and does not count."""
    logits = torch.tensor([[[3.0, 0.0, 0.0], [1.0, 1.0, 1.0], [7.0, 0.0, 0.0]]], requires_grad=True)
    labels = torch.tensor([[-100, 2, 1]])
    value = losses.flatten_loss(logits, labels)
    assert value.item() == pytest.approx(2.0)
    value.backward()
    # d/dz of (max - mean)^2 / 2 positions at [3, 0, 0]: 2*2*(1 - 1/3, -1/3, -1/3) / 2
    torch.testing.assert_close(logits.grad[0, 0], torch.tensor([4 / 3, -2 / 3, -2 / 3]))


def test_dual_variable_update_by_hand():
    """lambda <- max(0, lambda + eta (L_R - eps)): 100 + 5 (0.3 - 0.2) = 100.5; 1 + 5 (0 - 1) < 0 -> 0;
    no update while the epoch (progress after the step) is within the warm-up."""
    step = get_method("PDU").regulariser.after_step
    cfg = LossConfig(pdu_eps=0.2, pdu_eta=5.0, pdu_dual_warmup_epochs=1.0)
    state = {"pdu_lambda": torch.tensor(100.0, dtype=torch.float64)}
    step(state, {"retain_nll": 0.3}, cfg, epoch=1.0)  # the last step of the warm-up epoch
    assert state["pdu_lambda"].item() == 100.0
    step(state, {"retain_nll": 0.3}, cfg, epoch=1.25)
    assert state["pdu_lambda"].item() == pytest.approx(100.5)
    state = {"pdu_lambda": torch.tensor(1.0, dtype=torch.float64)}
    step(state, {"retain_nll": 0.0}, LossConfig(pdu_eps=1.0, pdu_eta=5.0, pdu_dual_warmup_epochs=0.0), epoch=0.5)
    assert state["pdu_lambda"].item() == 0.0


def test_dual_regulariser_value_and_logs():
    """lambda 3, eps 0.5, uniform logits over V=2 (retain NLL ln 2): 3 (ln 2 - 0.5)."""
    labels = torch.tensor([[-100, 1, 0]])
    ctx = LossContext(FixedLM(torch.zeros(1, 3, 2)), {"retain": part(labels)},
                      state={"pdu_lambda": torch.tensor(3.0, dtype=torch.float64)})
    value = get_method("PDU").regulariser.fn(ctx, LossConfig(pdu_eps=0.5))
    assert value.item() == pytest.approx(3 * (LN2 - 0.5), rel=1e-6)
    assert ctx.logs == pytest.approx({"retain_nll": LN2, "dual_lambda": 3.0})


# ---- RMU --------------------------------------------------------------------------------

def test_rmu_distance_by_hand():
    """d = 2, c = [1, 0]; h_0 = [1, 2]: (0 + 4)/2 = 2; h_1 = [3, 4]: (4 + 16)/2 = 10.
    Labels mark token 1 only -> 10; both tokens -> (2 + 10)/2 = 6."""
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    c = torch.tensor([1.0, 0.0])
    assert losses.rmu_distance(h, c, torch.tensor([[-100, 7]])).item() == pytest.approx(10.0)
    assert losses.rmu_distance(h, c, torch.tensor([[5, 7]])).item() == pytest.approx(6.0)


def test_rmu_control_vector():
    """||c|| = coeff, entries >= 0 (u ~ U[0,1)), the same seed gives the same c."""
    c = losses.rmu_control_vector(64, 20.0, seed=3)
    assert c.norm().item() == pytest.approx(20.0, rel=1e-6) and (c >= 0).all()
    torch.testing.assert_close(c, losses.rmu_control_vector(64, 20.0, seed=3))
    assert not torch.equal(c, losses.rmu_control_vector(64, 20.0, seed=4))


def tiny_llama(layers: int = 3):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=11, hidden_size=8, intermediate_size=16, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=2)
    return LlamaForCausalLM(config).eval()


def test_hidden_is_the_decoder_layers_output_from_the_same_forward():
    model = tiny_llama()
    captured = {}
    model.model.layers[1].register_forward_hook(lambda m, i, o: captured.setdefault("h", o[0] if isinstance(o, tuple) else o))
    calls = []
    model.register_forward_pre_hook(lambda m, a, k: calls.append(1), with_kwargs=True)
    ids = torch.tensor([[1, 2, 3, 4]])
    ctx = LossContext(model, {"forget": part(ids)}, output_hidden=True)
    ctx.logits("forget")
    torch.testing.assert_close(ctx.hidden("forget", 1), captured["h"])
    assert len(calls) == 1  # logits and hidden states from one forward
    with pytest.raises(ValueError, match="out of range"):
        ctx.hidden("forget", 2)  # the last layer's output is normalised


def test_rmu_state_layer_rule_and_distance_falls_with_training():
    """Default layer = round(7 * n / 32): 3 layers -> 1, 30 layers (SmolLM2) -> 7, 32 -> 7.
    A few SGD steps on RMU's forget loss bring layer-1 activations closer to c."""
    from unlearnlm.methods.baselines import rmu_layer

    assert [rmu_layer(SimpleNamespace(config=cfg_with(n)), LossConfig()) for n in (3, 30, 32)] == [1, 7, 7]
    model = tiny_llama()
    method = get_method("RMU")
    cfg = LossConfig(rmu_coeff=5.0)
    state = method.init_state(model, cfg, seed=0)
    assert int(state["rmu_layer"]) == 1 and state["rmu_control"].shape == (8,)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    batch = {"forget": part(ids), "retain": part(ids.flip(1))}
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    distances = []
    for _ in range(5):
        total, logs = method.loss(LossContext(model, batch, ref, state, output_hidden=True), cfg)
        distances.append(logs["forget_loss"])
        opt.zero_grad()
        total.backward()
        opt.step()
    assert distances[-1] < distances[0]


def cfg_with(n_layers: int):
    return SimpleNamespace(get_text_config=lambda: SimpleNamespace(num_hidden_layers=n_layers, hidden_size=4))


# ---- helpers ----------------------------------------------------------------------------

class FixedLM(nn.Module):
    """Returns the given logits (plus a zero-initialised trainable offset) for any input."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.fixed = logits
        self.offset = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask=None, **kwargs):
        return SimpleNamespace(logits=self.fixed + self.offset)


def part(labels: torch.Tensor) -> dict:
    ids = labels.clamp(min=0)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
