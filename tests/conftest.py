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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A folder with the SmolLM2 tokenizer (chat template) and a 2-layer, hidden-32 random
    Llama over its vocabulary, saved as safetensors."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny_llama")
    tok = AutoTokenizer.from_pretrained(str(_tokenizer_source()))
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
