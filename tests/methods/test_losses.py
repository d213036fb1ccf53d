"""Each loss against a value computed independently (by hand, loops, or another torch op)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnlm.methods import losses

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)


def log_sigmoid(x: float) -> float:
    return math.log(1 / (1 + math.exp(-x)))


def softmax_row(row: list[float]) -> list[float]:
    z = sum(math.exp(v) for v in row)
    return [math.exp(v) / z for v in row]


class TinyLM(nn.Module):
    """A bigram "LM": logits of the next token are a learned row per current token."""

    def __init__(self, vocab: int = 7):
        super().__init__()
        self.table = nn.Embedding(vocab, vocab)

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.table(input_ids))


# ---- NLL -----------------------------------------------------------------------------

def test_nll_on_uniform_logits():
    """V=2, all logits 0 -> p = 1/2 everywhere, each target token costs ln 2.

    row 0 labels [-100, 1, 0, 1]: 3 targets -> NLL_sum = 3 ln 2
    row 1 labels [-100, -100, 1, -100]: 1 target -> NLL_sum = ln 2
    NLL_mean = (3 ln 2 + ln 2) / 4 = ln 2; GA = -ln 2.
    """
    logits = torch.zeros(2, 4, 2)
    labels = torch.tensor([[-100, 1, 0, 1], [-100, -100, 1, -100]])
    nll, mask = losses.token_nll(logits, labels)
    assert nll.shape == mask.shape == (2, 3)
    assert mask.tolist() == [[True, True, True], [False, True, False]]
    torch.testing.assert_close(nll, torch.tensor([[LN2, LN2, LN2], [0.0, LN2, 0.0]]))
    torch.testing.assert_close(losses.sequence_nll(logits, labels), torch.tensor([3 * LN2, LN2]))
    torch.testing.assert_close(losses.mean_nll(logits, labels), torch.tensor(LN2))
    torch.testing.assert_close(losses.ga_loss(logits, labels), torch.tensor(-LN2))


def test_nll_uses_shifted_targets():
    """V=2, logits [0, ln 3] at every position -> p(0) = 1/4, p(1) = 3/4.

    labels [5(ignored by shift), 1, 0]: targets (1, 0) predicted by positions 0 and 1:
    NLL = ln(4/3) + ln 4. The label at position 0 is never a target.
    """
    logits = torch.tensor([[[0.0, LN3]] * 3])
    labels = torch.tensor([[0, 1, 0]])
    torch.testing.assert_close(
        losses.sequence_nll(logits, labels), torch.tensor([LN4 - LN3 + LN4])
    )


def test_token_nll_matches_loop():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 4)
    labels = torch.tensor([[-100, -100, 2, 3, 0], [-100, 1, 1, -100, -100]])
    nll, _ = losses.token_nll(logits, labels)
    for b in range(2):
        for t in range(4):
            y = labels[b, t + 1].item()
            want = 0.0 if y == -100 else -math.log(softmax_row(logits[b, t].tolist())[y])
            assert nll[b, t].item() == pytest.approx(want, abs=1e-5)


def test_mean_nll_matches_cross_entropy():
    torch.manual_seed(1)
    logits = torch.randn(3, 6, 5)
    labels = torch.randint(0, 5, (3, 6))
    labels[:, :2] = -100
    labels[2, 4:] = -100
    want = F.cross_entropy(
        logits[:, :-1].reshape(-1, 5), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(losses.mean_nll(logits, labels), want)


def test_mean_nll_without_targets_is_zero_and_low_precision_is_upcast():
    labels = torch.full((1, 3), -100)
    assert losses.mean_nll(torch.randn(1, 3, 4), labels).item() == 0.0
    logits = torch.randn(2, 4, 5)
    labels = torch.randint(0, 5, (2, 4))
    out = losses.mean_nll(logits.bfloat16(), labels)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(losses.mean_nll(logits.bfloat16().float(), labels).item())


# ---- preference losses ---------------------------------------------------------------

def test_npo_loss():
    """beta = 0.1, NLL_theta = (2, 5), NLL_ref = (3, 3): x = beta * (NLL_theta - NLL_ref) = (-0.1, 0.2);
    L = -(2/0.1) * (log s(-0.1) + log s(0.2)) / 2. At theta = ref: L = 20 ln 2."""
    want = -20 * (log_sigmoid(-0.1) + log_sigmoid(0.2)) / 2
    got = losses.npo_loss(torch.tensor([2.0, 5.0]), torch.tensor([3.0, 3.0]), beta=0.1)
    assert got.item() == pytest.approx(want, rel=1e-6)
    same = losses.npo_loss(torch.tensor([4.0]), torch.tensor([4.0]), beta=0.1)
    assert same.item() == pytest.approx(20 * LN2, rel=1e-6)


def test_dpo_loss():
    """log p = -NLL_sum. theta: win (idk) NLL (4, 1), lose (forget) NLL (2, 3)
    -> logp_win - logp_lose = (-4 + 2, -1 + 3) = (-2, 2).
    ref: win (5, 2), lose (2, 2) -> (-3, 0). Difference (1, 2), times beta 0.1 -> (0.1, 0.2).
    L = -(2/0.1) * (log s(0.1) + log s(0.2)) / 2."""
    want = -20 * (log_sigmoid(0.1) + log_sigmoid(0.2)) / 2
    got = losses.dpo_loss(
        torch.tensor([4.0, 1.0]), torch.tensor([2.0, 3.0]),
        torch.tensor([5.0, 2.0]), torch.tensor([2.0, 2.0]), beta=0.1,
    )
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_ap_loss():
    """beta = 0.5, NLL(y_idk) = (6, 2), NLL(y_true) = (1, 4): x = 0.5 * (5, -2) = (2.5, -1);
    L = -(1/0.5) * (log s(2.5) + log s(-1)) / 2."""
    want = -2 * (log_sigmoid(2.5) + log_sigmoid(-1.0)) / 2
    got = losses.ap_loss(torch.tensor([6.0, 2.0]), torch.tensor([1.0, 4.0]), beta=0.5)
    assert got.item() == pytest.approx(want, rel=1e-6)


# ---- ME ------------------------------------------------------------------------------

ME_LOGITS = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [3.0, -2.0, 1.0], [0.0, 0.0, 0.0]]])
ME_LABELS = torch.tensor([[-100, 0, -100, 2]])  # targets at shifted positions 0 and 2


def test_me_p_u_is_log_v_minus_entropy():
    """KL(P_t || U) = ln V - H(P_t), averaged over positions 0 and 2 (position 1 predicts an
    ignored label, position 3 predicts nothing)."""
    kls = []
    for t in (0, 2):
        p = softmax_row(ME_LOGITS[0, t].tolist())
        entropy = -sum(pi * math.log(pi) for pi in p)
        kls.append(LN3 - entropy)
    got = losses.me_loss(ME_LOGITS, ME_LABELS, "p_u")
    assert got.item() == pytest.approx(sum(kls) / 2, rel=1e-5)


def test_me_u_p_matches_torch_kl_div():
    """Reference code: kl_div(log P, U) = KL(U || P), over the same positions."""
    logp = F.log_softmax(ME_LOGITS[:, :-1], dim=-1)
    per_pos = F.kl_div(logp, torch.full_like(logp, 1 / 3), reduction="none").sum(-1)[0]
    want = (per_pos[0] + per_pos[2]) / 2
    torch.testing.assert_close(losses.me_loss(ME_LOGITS, ME_LABELS, "u_p"), want)


@pytest.mark.parametrize("direction", losses.ME_DIRECTIONS)
def test_me_is_zero_at_uniform(direction):
    logits = torch.full((2, 4, 5), 1.7)
    labels = torch.zeros(2, 4, dtype=torch.long)
    assert losses.me_loss(logits, labels, direction).item() == pytest.approx(0.0, abs=1e-6)


def test_me_rejects_unknown_direction():
    with pytest.raises(ValueError, match="direction"):
        losses.me_loss(ME_LOGITS, ME_LABELS, "p_p")


# ---- KL regulariser -----------------------------------------------------------------

def test_kl_regulariser_matches_manual_sum_over_real_positions():
    """Row 0 all real -> positions 0, 1, 2. Row 1 right-padded [1,1,0,0] -> position 0 only
    (position 1 predicts a pad). Row 2 left-padded [0,1,1,1] -> positions 1, 2 (position 0 is
    a pad predicting the first real token). Mean of KL(P_ref || P_theta) over 6 positions."""
    torch.manual_seed(2)
    logits, ref_logits = torch.randn(3, 4, 3), torch.randn(3, 4, 3)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 1, 1, 1]])
    positions = [(0, 0), (0, 1), (0, 2), (1, 0), (2, 1), (2, 2)]
    total = 0.0
    for b, t in positions:
        p, q = softmax_row(ref_logits[b, t].tolist()), softmax_row(logits[b, t].tolist())
        total += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    got = losses.kl_regulariser(logits, ref_logits, mask)
    assert got.item() == pytest.approx(total / len(positions), rel=1e-5)

    changed = logits.clone()
    changed[1, 1:] += 5.0  # padded positions of row 1 do not count
    assert losses.kl_regulariser(changed, ref_logits, mask).item() == pytest.approx(got.item())
    assert losses.kl_regulariser(ref_logits, ref_logits, mask).item() == pytest.approx(0.0, abs=1e-6)


# ---- gradient direction --------------------------------------------------------------

def _batch(vocab: int = 7):
    torch.manual_seed(3)
    input_ids = torch.randint(0, vocab, (2, 6))
    labels = input_ids.clone()
    labels[:, :2] = -100
    return input_ids, labels


def _sgd_step(model: nn.Module, loss: torch.Tensor, lr: float) -> None:
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad


def test_ga_step_raises_forget_nll():
    model = TinyLM()
    input_ids, labels = _batch()
    before = losses.mean_nll(model(input_ids).logits, labels).item()
    _sgd_step(model, losses.ga_loss(model(input_ids).logits, labels), lr=0.5)
    after = losses.mean_nll(model(input_ids).logits, labels).item()
    assert after > before


def _mean_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    logp = F.log_softmax(logits[:, :-1], dim=-1)
    entropy = -(logp.exp() * logp).sum(-1)
    mask = labels[:, 1:] != -100
    return (entropy[mask].mean()).item()


@pytest.mark.parametrize("direction", losses.ME_DIRECTIONS)
def test_me_step_raises_entropy(direction):
    torch.manual_seed(4)
    model = TinyLM()
    with torch.no_grad():
        model.table.weight.mul_(3.0)  # start peaked, far from uniform
    input_ids, labels = _batch()
    before = _mean_entropy(model(input_ids).logits, labels)
    _sgd_step(model, losses.me_loss(model(input_ids).logits, labels, direction), lr=0.5)
    after = _mean_entropy(model(input_ids).logits, labels)
    assert after > before
