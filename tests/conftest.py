"""Shared fixtures: a tiny random Llama with a real tokenizer (no network, seconds on CPU)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TOKENIZER_ENV = "UNLEARNLM_TEST_TOKENIZER"
DEFAULT_TOKENIZER_DIR = Path(__file__).resolve().parents[1] / ".cache" / "models" / "smollm2-135m"


def _tokenizer_source() -> Path:
    path = Path(os.environ.get(TOKENIZER_ENV) or DEFAULT_TOKENIZER_DIR)
    if (path / "tokenizer_config.json").is_file():
        return path
    from unlearnlm.models.offline import prepare_offline_model

    return prepare_offline_model("smollm2-135m")


def _small_vocab_tokenizer(tok, vocab_size: int = 2000):
    """SmolLM2's tokenizer (chat template, special tokens) retrained to a small BPE vocabulary
    on TOFU-like text: the tiny model's logits then cost 25x less than with 49k tokens."""
    from unlearnlm.data.loading import read_jsonl, read_lines, resolve_data_dir

    texts = []
    try:
        data_dir = resolve_data_dir()
        for name in ("forget01_perturbed", "retain_perturbed", "real_authors_perturbed", "world_facts_perturbed"):
            for row in read_jsonl(data_dir / "tofu" / f"{name}.json"):
                texts += [row["question"], row["answer"], *row["perturbed_answer"]]
        texts += read_lines(data_dir / "idontknow.jsonl")
    except Exception:
        texts = ["The quick brown fox jumps over the lazy dog."] * 10
    return tok.train_new_from_iterator(texts, vocab_size=vocab_size)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A folder with the SmolLM2 tokenizer (chat template) and a 2-layer, hidden-32 random
    Llama over its vocabulary, saved as safetensors."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny_llama")
    tok = _small_vocab_tokenizer(AutoTokenizer.from_pretrained(str(_tokenizer_source())))
    tok.save_pretrained(out)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        tie_word_embeddings=True,
        # Wider init than 0.02: peaked logits, so greedy ties never hinge on float noise.
        initializer_range=0.2,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="session")
def tiny_nli_dir(tmp_path_factory) -> Path:
    """A tiny random 3-way BERT NLI classifier with the packaged MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from unlearnlm.evaluation.judges.embedder import packaged_minilm_path

    out = tmp_path_factory.mktemp("tiny_nli")
    tok = AutoTokenizer.from_pretrained(str(packaged_minilm_path()))
    tok.save_pretrained(out)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, num_labels=3,
                        id2label={0: "entailment", 1: "neutral", 2: "contradiction"},
                        label2id={"entailment": 0, "neutral": 1, "contradiction": 2})
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="session")
def make_tiny_overrides(tiny_model_dir, tiny_nli_dir):
    """``make(base, *extra)``: overrides that make the demo preset run in seconds on the tiny
    model, with cache and runs under ``base`` (module-scoped runs need their own base)."""
    def make(base: Path, *extra: str) -> list[str]:
        return [
            f"model.name={tiny_model_dir}", f"model.cache_dir={base / 'cache'}",
            f"output_dir={base / 'runs'}", "run_name=tiny",
            "finetune.retain_rows=4", "finetune.train.epochs=1", "finetune.train.batch_size=16",
            "finetune.train.lr=1e-3", "finetune.train.bf16=false",
            "finetune.check_size=4", "finetune.check_max_new_tokens=4",
            "unlearn.train.epochs=1", "unlearn.train.batch_size=8", "unlearn.train.lr=1e-3",
            "unlearn.train.bf16=false",
            "eval.ds_size=3", "eval.max_new_tokens=6", "eval.batch_size=4", "eval.bf16=false",
            f"eval.nli={tiny_nli_dir}", *extra,
        ]
    return make


@pytest.fixture()
def tiny_run_overrides(make_tiny_overrides, tmp_path) -> list[str]:
    """``make_tiny_overrides`` rooted at this test's ``tmp_path``."""
    return make_tiny_overrides(tmp_path)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    from unlearnlm.data.loading import resolve_data_dir
    from unlearnlm.errors import DataError

    """The real data directory (../shared/data from the project root, or $UNLEARNLM_DATA_DIR)."""
    try:
        path = resolve_data_dir()
    except DataError as e:
        pytest.skip(f"shared data directory not available: {e}")
    from unlearnlm.data.bundle import find_data_file

    if find_data_file(path / "tofu" / "forget01.json") is None:
        pytest.skip(f"{path} does not hold the TOFU files (tofu/forget01.json missing)")
    return path
