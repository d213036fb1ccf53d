"""Judges for the cosine-similarity and entailment metrics: the sentence embedder and the
NLI judge. Fast: the NLI tests use a tiny random BERT; the real offline judge is only built
in the ``real_model`` test."""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from unlearnlm.errors import ConfigError, DataError, ModelError  # noqa: E402
from unlearnlm.evaluation.judges.embedder import SentenceEmbedder, packaged_minilm_path  # noqa: E402
from unlearnlm.evaluation.judges.factory import load_nli_judge  # noqa: E402
from unlearnlm.evaluation.judges.labels import LABELS, entailment_label_id, normalize_labels  # noqa: E402
from unlearnlm.evaluation.judges.nli import NLIJudge  # noqa: E402
from unlearnlm.evaluation.judges.nli_offline import (  # noqa: E402
    _length_bucketed_batches,
    build_offline_nli,
    offline_judge_key,
)
from unlearnlm.evaluation.judges.nli_pairs import make_nli_pairs  # noqa: E402

DATA_DIR = Path(os.environ.get("UNLEARNLM_DATA_DIR") or Path(__file__).resolve().parents[3] / "shared" / "data")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


# --------------------------------------------------------------------------- embedder


@pytest.fixture(scope="module")
def embedder():
    return SentenceEmbedder("minilm", batch_size=2)


def test_packaged_minilm_path():
    p = packaged_minilm_path()
    assert (p / "config.json").is_file() and (p / "model.safetensors").is_file()


def test_embedder_unit_vectors_in_input_order(embedder):
    texts = [
        "a much longer sentence about the weather in the mountains during late autumn",
        "short",
        "",
        "The cat sat on the mat.",
        "medium length sentence here",
    ]
    emb = embedder.encode(texts)
    assert emb.shape == (len(texts), 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    # Same vector whatever the batch / sort position.
    for i, t in enumerate(texts):
        np.testing.assert_allclose(embedder.encode([t])[0], emb[i], atol=1e-4)
    assert embedder.encode([]).shape == (0, 384)
    assert "MiniLM" in embedder.name
    with pytest.raises(TypeError):
        embedder.encode("not a list")


def test_embedder_paraphrase_beats_unrelated(embedder):
    ref = "The author was born in Kuwait City in 1956 and writes French literature."
    para = "Born in 1956 in Kuwait City, the writer is known for French literature."
    unrelated = "Photosynthesis converts light energy into chemical energy in plants."
    cos = embedder.cosine([para, unrelated], [ref, ref])
    assert cos[0] > cos[1] + 0.2


def test_embedder_bad_path():
    with pytest.raises(ModelError):
        SentenceEmbedder("/nonexistent/embedder/folder")


# --------------------------------------------------------------------------- label lookup


def test_entailment_label_lookup():
    assert entailment_label_id({0: "ENTAILMENT", 1: "neutral", 2: "contradiction"}) == 0
    assert entailment_label_id({"0": "contradiction", "1": "Entails", "2": "neutral"}) == 1
    # binary RTE-style heads: "not_entailment" is not the entailment class
    assert entailment_label_id({0: "not_entailment", 1: "entailment"}) == 1
    assert entailment_label_id({0: "entailment", 1: "not_entailment"}) == 0
    with pytest.raises(ModelError, match="no entailment class"):
        entailment_label_id({0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(ModelError, match="no entailment class"):
        entailment_label_id({0: "positive", 1: "negative"}, "sentiment-model")
    assert normalize_labels({0: "Contradiction", 1: "NEUTRAL", 2: "Entailment"}, 2) == {
        0: "contradiction",
        1: "neutral",
        2: "entailment",
    }


# --------------------------------------------------------------------------- NLIJudge on a tiny model


def _tiny_nli(tmp_path: Path, id2label: dict[int, str]) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(str(packaged_minilm_path()), local_files_only=True)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=len(id2label),
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg)
    with torch.no_grad():  # make predictions depend visibly on the input
        model.classifier.weight.normal_(0, 5.0)
    out = tmp_path / "tiny-nli"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    assert (out / "model.safetensors").is_file()
    return out


@pytest.fixture(scope="module")
def tiny_nli_dir(tmp_path_factory):
    return _tiny_nli(tmp_path_factory.mktemp("nli"), {0: "ENTAILMENT", 1: "Neutral", 2: "CONTRADICTION"})


def test_nli_judge_predict_in_input_order(tiny_nli_dir):
    judge = NLIJudge(str(tiny_nli_dir), batch_size=3)
    assert judge.entailment_id == 0
    assert judge.name == str(tiny_nli_dir)
    premises = [
        "A long premise " + "with many words " * 12,
        "short",
        "",
        "the author writes mystery novels set in Paris",
        "x " * 100,  # longer than max_position_embeddings: truncated
        "medium sized premise about books",
        "one more",
    ]
    hypotheses = ["h"] * 3 + ["the author writes novels", "y", "books", ""]
    labels = judge.predict(premises, hypotheses)
    assert len(labels) == len(premises)
    assert set(labels) <= set(LABELS)
    # each pair alone gives the same label: the length sorting does not mix up the order
    singles = [judge.predict([p], [h])[0] for p, h in zip(premises, hypotheses)]
    assert labels == singles
    # a reversed input gives the reversed output
    assert judge.predict(premises[::-1], hypotheses[::-1], batch_size=2) == labels[::-1]
    assert judge.is_entailment(premises, hypotheses) == [lab == "entailment" for lab in labels]
    assert judge.predict([], []) == []
    with pytest.raises(ValueError):
        judge.predict(["a"], ["b", "c"])
    info = judge.info
    assert info["heldout_accuracy"] is None and info["name"] == judge.name
    assert judge.max_length == 64


def test_nli_judge_reads_judge_info(tmp_path):
    d = _tiny_nli(tmp_path, {0: "entailment", 1: "neutral", 2: "contradiction"})
    (d / "judge_info.json").write_text(
        json.dumps({"name": "offline-minilm-nli:abc", "heldout_accuracy": 0.95, "n_train_pairs": 30,
                    "excluded_authors": 2})
    )
    judge = NLIJudge(str(d))
    assert judge.name == "offline-minilm-nli:abc"
    assert judge.info["heldout_accuracy"] == 0.95
    assert judge.info["n_train_pairs"] == 30 and judge.info["excluded_authors"] == 2


def test_nli_judge_without_entailment_class(tmp_path):
    d = _tiny_nli(tmp_path, {0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(ModelError, match="no entailment class"):
        NLIJudge(str(d))


def test_nli_judge_missing_model(tmp_path):
    with pytest.raises(ModelError, match="cannot load NLI model"):
        NLIJudge(str(tmp_path / "nope"))
    with pytest.raises(ModelError, match="offline"):
        NLIJudge("some-org/not-a-cached-nli-model")


def test_load_nli_judge_hub_spec_passthrough(tiny_nli_dir, tmp_path):
    judge = load_nli_judge(str(tiny_nli_dir), None, set(), tmp_path)
    assert isinstance(judge, NLIJudge) and judge.path == tiny_nli_dir.resolve()
    with pytest.raises(ConfigError):
        load_nli_judge(str(tiny_nli_dir), None, set(), tmp_path, epochs=1)


# --------------------------------------------------------------------------- training pairs


def _synthetic_rows(n_authors: int, per_author: int = 4) -> list[dict]:
    rows = []
    for a in range(n_authors):
        for q in range(per_author):
            rows.append(
                {
                    "question": f"Q{a}-{q}?",
                    "answer": f"A{a}-{q}",
                    "paraphrased_answer": f"P{a}-{q}",
                    "perturbed_answer": [f"X{a}-{q}-{k}" for k in range(3)],
                }
            )
    return rows


def _author(text: str) -> int:
    return int(text[1:].split("-")[0])


def test_make_nli_pairs_exclusion_balance_and_labels():
    rows = _synthetic_rows(12)
    exclude = {"Q3-2?", "Q7-0?", "unrelated question"}
    res = make_nli_pairs(rows, exclude, seed=1, rows_per_author=4, heldout_fraction=0.2, swap_fraction=0.5,
                         question_fraction=0)
    assert res.excluded_authors == [3, 7]
    assert len(res.eligible_authors) == 10 and 3 not in res.eligible_authors
    assert len(res.heldout_authors) == 2
    assert not set(res.heldout_authors) & set(res.train_authors)
    assert sorted(res.heldout_authors + res.train_authors) == res.eligible_authors

    for split, authors in ((res.train, res.train_authors), (res.heldout, res.heldout_authors)):
        counts = Counter(p.label for p in split)
        assert set(counts) == set(LABELS) and len(set(counts.values())) == 1  # balanced
        swapped = 0
        for p in split:
            a = {_author(p.premise), _author(p.hypothesis)}
            assert len(a) == 1 and a <= set(authors)  # one author, of this split, never excluded
            if p.hypothesis.startswith("A"):  # swapped direction: hypothesis = the answer
                swapped += 1
                prem = p.premise[0]
                assert {"P": "entailment", "X": "contradiction", "A": "neutral"}[prem] == p.label
            else:
                assert p.premise.startswith("A")
                hyp = p.hypothesis[0]
                assert {"P": "entailment", "X": "contradiction", "A": "neutral"}[hyp] == p.label
                if p.label == "neutral":
                    assert p.hypothesis != p.premise
        if split is res.train:
            assert swapped > 0
    # every forward row of the training authors appears once per class
    fwd_e = [p for p in res.train if p.label == "entailment" and p.premise.startswith("A")]
    assert len(fwd_e) == 4 * len(res.train_authors)


def test_make_nli_pairs_deterministic_and_capped():
    rows = _synthetic_rows(10)
    a = make_nli_pairs(rows, set(), seed=3, rows_per_author=4)
    b = make_nli_pairs(rows, set(), seed=3, rows_per_author=4)
    c = make_nli_pairs(rows, set(), seed=4, rows_per_author=4)
    assert a.train == b.train and a.heldout == b.heldout
    assert a.train != c.train
    capped = make_nli_pairs(rows, set(), seed=3, rows_per_author=4, max_pairs=20, max_heldout_pairs=7)
    assert len(capped.train) == 18 and len(capped.heldout) == 6
    for split in (capped.train, capped.heldout):
        assert len(set(Counter(p.label for p in split).values())) == 1
    assert len(make_nli_pairs(rows, set(), seed=0, rows_per_author=4, swap_fraction=0).train) == 3 * 4 * 9


def test_make_nli_pairs_question_prefixed_premises():
    rows = _synthetic_rows(10)
    plain = make_nli_pairs(rows, set(), seed=0, rows_per_author=4, swap_fraction=0, question_fraction=0)
    assert not any(p.premise.startswith("Q") for p in plain.train)
    always = make_nli_pairs(rows, set(), seed=0, rows_per_author=4, swap_fraction=0, question_fraction=1)
    assert always.train and all(p.premise.startswith("Q") and "?" in p.premise for p in always.train)
    # Premise "Qa-r? <answer of row r>", hypothesis unchanged: the labels do not depend on the form.
    for p in always.train:
        question, answer = p.premise.split("? ", 1)
        assert any(r["question"] == question + "?" and r["answer"] == answer for r in rows)
    with pytest.raises(ConfigError, match="question_fraction"):
        make_nli_pairs(rows, set(), rows_per_author=4, question_fraction=1.5)


def test_make_nli_pairs_errors():
    with pytest.raises(DataError):
        make_nli_pairs(_synthetic_rows(2)[:-1], set(), rows_per_author=4)
    with pytest.raises(ConfigError):
        make_nli_pairs(_synthetic_rows(2), set(), rows_per_author=4, heldout_fraction=1.0)
    # all authors excluded -> no pairs
    res = make_nli_pairs(_synthetic_rows(2), {"Q0-0?", "Q1-3?"}, rows_per_author=4)
    assert res.train == [] and res.heldout == [] and res.excluded_authors == [0, 1]


def test_offline_key_depends_on_questions_and_params():
    k = offline_judge_key({"b", "a"}, {"epochs": 1})
    assert k == offline_judge_key(["a", "b", "a"], {"epochs": 1}) and len(k) == 12
    assert k != offline_judge_key({"a"}, {"epochs": 1})
    assert k != offline_judge_key({"a", "b"}, {"epochs": 2})


def test_length_bucketed_batches_cover_every_example_once_sorted_within_chunks():
    import random

    lengths = [(7 * i) % 23 for i in range(230)]  # 230 examples, batch 2: chunks of 100, 100, 30
    batches = _length_bucketed_batches(lengths, 2, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(230))
    assert all(len(b) <= 2 for b in batches) and len(batches) == 115
    assert all(lengths[b[0]] <= lengths[b[-1]] for b in batches)  # sorted inside each batch
    again = _length_bucketed_batches(lengths, 2, random.Random(0))
    assert again == batches and again != _length_bucketed_batches(lengths, 2, random.Random(1))


def test_a_small_offline_judge_build_is_deterministic_and_reused(tmp_path):
    import hashlib

    from unlearnlm.data.bundle import BUNDLED_DIR  # the packaged copy: runs in every clone

    small = dict(max_pairs=12, epochs=1, progress=False, max_heldout_pairs=6, num_threads=1)
    exclude = ["What is the full name of the author born in Kuwait City, Kuwait on 08/09/1956?"]
    first = build_offline_nli(BUNDLED_DIR, exclude, tmp_path / "a", **small)
    second = build_offline_nli(BUNDLED_DIR, exclude, tmp_path / "b", **small)
    assert first.name == second.name  # the same key, from the same questions and parameters
    weights = [hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest() for d in (first, second)]
    assert weights[0] == weights[1]  # same seed, same judge
    info = json.loads((first / "judge_info.json").read_text())
    # balanced over the 3 labels: the largest multiple of 3 within max_pairs (40 would give 39)
    assert info["n_train_pairs"] == 12 and info["excluded_authors"] == 1 and info["params"]["max_pairs"] == 12
    assert 0 <= info["heldout_accuracy"] <= 1 and not list((tmp_path / "a").glob(".*.tmp"))
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert build_offline_nli(BUNDLED_DIR, exclude, tmp_path / "a", **small) == first  # reused, not rebuilt
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    other_seed = build_offline_nli(BUNDLED_DIR, exclude, tmp_path / "a", seed=1, **small)
    assert other_seed != first


# --------------------------------------------------------------------------- the real offline judge


@pytest.mark.real_model
@pytest.mark.slow
def test_build_offline_judge_real(tmp_path, request):
    # Minutes of CPU: only when asked for (-m real_model) or with a prebuilt cache.
    if "real_model" not in (request.config.getoption("-m") or "") and not os.environ.get(
        "UNLEARNLM_JUDGE_CACHE"
    ):
        pytest.skip("builds the offline NLI judge (minutes); run with -m real_model")
    if not (DATA_DIR / "tofu" / "forget10_perturbed.json").is_file():
        pytest.skip("shared TOFU data not found")
    from unlearnlm.data.loading import read_jsonl

    tofu = DATA_DIR / "tofu"
    exclude = {r["question"] for r in read_jsonl(tofu / "forget01.json") if r["task_id"] == "1"}
    for name in ("retain_perturbed", "real_authors_perturbed", "world_facts_perturbed"):
        exclude |= {r["question"] for r in read_jsonl(tofu / f"{name}.json")}
    cache = Path(os.environ.get("UNLEARNLM_JUDGE_CACHE") or tmp_path)  # reuse a build if given
    judge = load_nli_judge("offline", DATA_DIR, exclude, cache, progress=False)
    assert judge.info["heldout_accuracy"] >= 0.9
    assert judge.info["excluded_authors"] >= 2
    # cached: the second call reuses the folder
    again = load_nli_judge("offline", DATA_DIR, exclude, cache, progress=False)
    assert again.path == judge.path
    # The 40 forget task-1 rows (excluded authors): paraphrases mostly entailed, perturbed
    # answers mostly not (measured 0.925 and 0.075 for the default build).
    rows = read_jsonl(tofu / "forget01_perturbed.json")[:40]
    para = judge.predict([r["answer"] for r in rows], [r["paraphrased_answer"] for r in rows])
    pert = judge.predict([r["answer"] for r in rows], [r["perturbed_answer"][0] for r in rows])
    assert para.count("entailment") / len(rows) >= 0.8
    assert pert.count("entailment") / len(rows) <= 0.2
