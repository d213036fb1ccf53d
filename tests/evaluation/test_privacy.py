"""Membership inference and memorisation against numbers worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from unlearnlm.evaluation import privacy as p
from unlearnlm.evaluation.aggregates import mia_aucs, retain_relative
from unlearnlm.evaluation.likelihood import mean_grad_norm


def test_loss_and_zlib():
    assert p.loss_score([-1.0, -2.0, -3.0]) == pytest.approx(2.0)
    # zlib.compress(b"Jane Doe wrote it.") is 26 bytes (18 bytes of text + zlib's header and checksum)
    assert p.zlib_score([-1.0, -2.0, -3.0], "Jane Doe wrote it.") == pytest.approx(2.0 / 26)
    with pytest.raises(ValueError, match="no answer tokens"):
        p.loss_score([])


def test_min_k_takes_the_lowest_forty_percent():
    logp = [-0.1, -2.0, -0.5, -3.0, -1.0]
    # k = 0.4 of 5 tokens = 2 tokens: -3.0 and -2.0, mean -2.5
    assert p.min_k_score(logp) == pytest.approx(2.5)
    assert p.min_k_score([-0.7]) == pytest.approx(0.7)  # at least one token
    assert p.min_k_score(logp, k=1.0) == pytest.approx(6.6 / 5)


def test_min_k_plus_plus_by_hand():
    # Every position has the two-point distribution (0.8, 0.2): mu = 0.8 ln 0.8 + 0.2 ln 0.2, and
    # the standardised log-prob of the rare token is -sqrt(0.8 / 0.2) = -2, of the likely one
    # +sqrt(0.2 / 0.8) = 0.5.
    a, b = math.log(0.8), math.log(0.2)
    mu = 0.8 * a + 0.2 * b
    sigma = math.sqrt(0.8 * a * a + 0.2 * b * b - mu * mu)
    assert (b - mu) / sigma == pytest.approx(-2.0) and (a - mu) / sigma == pytest.approx(0.5)
    logp = [b, a, a, b, a]
    # lowest 2 of z = [-2, 0.5, 0.5, -2, 0.5]: mean -2
    assert p.min_k_plus_plus_score(logp, [mu] * 5, [sigma] * 5) == pytest.approx(2.0)
    # a one-hot position (sigma 0) scores 0; the lowest 40% of [0, 0.5] is 0 (1 token)
    assert p.min_k_plus_plus_score([0.0, a], [0.0, mu], [0.0, sigma]) == pytest.approx(0.0)


def test_auc_counts_pairs_and_halves_ties():
    # (member, non-member) pairs with the member lower: (1,2) (1,4) (2,4) (3,4), the tie (2,2)
    # counts one half, (3,2) not: 4.5 of 6
    assert p.auc([1.0, 2.0, 3.0], [2.0, 4.0]) == pytest.approx(0.75)
    assert p.auc([1.0, 1.0], [5.0]) == 1.0 and p.auc([5.0], [1.0, 2.0]) == 0.0
    assert p.auc([3.0, 3.0], [3.0]) == 0.5


def test_privleak_signs():
    assert p.privleak(0.9, 0.5) == pytest.approx(((1 - 0.9) - (1 - 0.5)) / (1 - 0.5) * 100)  # -80
    assert p.privleak(1.0, 0.5) == pytest.approx(-100.0)  # the target, fully exposed
    assert p.privleak(0.5, 0.5) == pytest.approx(0.0)  # retain-like
    assert p.privleak(0.3, 0.5) == pytest.approx(40.0)  # over-unlearned: positive
    assert p.privleak(0.7, 1.0) is None


@pytest.mark.parametrize("hits, em, es", [
    ([True, False, True, True], 0.75, 0.5),  # the suffix after 2 tokens matches: 1 - 2/4
    ([False, True, True, True], 0.75, 0.75),
    ([True, True, True, True], 1.0, 1.0),
    ([True, True, True, False], 0.75, 0.0),  # no matching suffix: 0 (one reference returns 1/T)
    ([False, False, False, True], 0.25, 0.25),
])
def test_exact_memorisation_and_extraction_strength(hits, em, es):
    assert p.exact_memorisation(hits) == pytest.approx(em)
    assert p.extraction_strength(hits) == pytest.approx(es)


def test_grad_norm_against_autograd_by_hand():
    # loss = (w . x + b - y)^2 with x = (1, 2), w = (0.5, -1), b = 0.25, y = 1: residual r = -2.25,
    # dL/dw = 2 r x = (-4.5, -9), dL/db = 2 r = -4.5; norms sqrt(101.25) and 4.5
    w = torch.tensor([0.5, -1.0], requires_grad=True)
    b = torch.tensor(0.25, requires_grad=True)
    loss = (w @ torch.tensor([1.0, 2.0]) + b - 1.0) ** 2
    assert mean_grad_norm(loss, [w, b]) == pytest.approx((math.sqrt(101.25) + 4.5) / 2)
    unused = torch.zeros(3, requires_grad=True)
    loss = (w.sum() - 1.0) ** 2  # residual -1.5: dL/dw = (-3, -3)
    assert mean_grad_norm(loss, [w, unused]) == pytest.approx(math.sqrt(18) / 2)  # unused: norm 0


def test_aucs_from_records_and_against_the_retain_model():
    model = {"forget": [{"question": "a", "mia_loss": 1.0, "mia_min_k": 1.0}, {"question": "b", "mia_loss": 1.2, "mia_min_k": 2.0}],
             "holdout": [{"question": "c", "mia_loss": 2.0, "mia_min_k": 3.0}, {"question": "d", "mia_loss": 2.5, "mia_min_k": 4.0}]}
    retain = {"forget": [{"question": "a", "mia_loss": 2.0, "mia_min_k": 3.0}, {"question": "b", "mia_loss": 2.1, "mia_min_k": 1.0}],
              "holdout": [{"question": "c", "mia_loss": 2.0, "mia_min_k": 2.0}, {"question": "d", "mia_loss": 2.4, "mia_min_k": 4.0}]}
    assert mia_aucs(model["forget"], model["holdout"]) == {"auc_mia_loss": 1.0, "auc_mia_min_k": 1.0}
    # retain Min-K%: (3,2) no, (3,4) (1,2) (1,4) yes: 0.75; privleak ((1-1) - (1-0.75)) / 0.25 x 100 = -100
    # Reference: model - retain NLL, forget (-1.0, -0.9) all below holdout (0.0, 0.1): AUC 1
    out = retain_relative(model, retain)
    assert out["privleak"] == pytest.approx(-100.0) and out["auc_mia_reference"] == pytest.approx(1.0)
    assert retain_relative(model, {"forget": retain["forget"]}) == {}  # no holdout: nothing


def test_token_stats_equal_a_per_example_computation(tiny_model_dir):
    """Batched, padded and trimmed statistics against one unpadded forward per example, with
    mu from the entropy and sigma from the central second moment (other formulas than the code's)."""
    from unlearnlm.data.prompts import PromptFormat, answer_ids, prompt_ids
    from unlearnlm.evaluation.likelihood import answer_token_stats, nll_means
    from unlearnlm.models.loading import load_model, load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir)).eval()
    fmt = PromptFormat.for_tokenizer(tok)
    pairs = [("Who wrote the book?", "Jane Doe wrote it in 1990."), ("Where?", "Paris.")]
    stats = answer_token_stats(model, tok, fmt, pairs, batch_size=2, progress=False)
    nll = nll_means(model, tok, fmt, pairs, batch_size=2, progress=False)
    for (q, a), s, mean_nll in zip(pairs, stats, nll):
        prompt, answer = prompt_ids(tok, fmt, q), answer_ids(tok, fmt, a)
        with torch.no_grad():
            logits = model(torch.tensor([prompt + answer])).logits[0].double()
        rows = logits[len(prompt) - 1 : len(prompt) + len(answer) - 1]  # the positions predicting the answer
        dist = torch.distributions.Categorical(logits=rows)
        lp = torch.log_softmax(rows, -1)
        mu = -dist.entropy()
        sigma = torch.sqrt(((lp - mu[:, None]) ** 2 * lp.exp()).sum(-1))
        y = torch.tensor(answer)
        assert len(s["logp"]) == len(answer)
        assert s["logp"] == pytest.approx(lp[torch.arange(len(y)), y].tolist(), abs=1e-4)
        assert s["mu"] == pytest.approx(mu.tolist(), abs=1e-4)
        assert s["sigma"] == pytest.approx(sigma.tolist(), abs=1e-4)
        assert s["hit"] == (rows.argmax(-1) == y).tolist()
        assert p.loss_score(s["logp"]) == pytest.approx(mean_nll, abs=1e-5)  # LOSS = the likelihood stage's NLL
