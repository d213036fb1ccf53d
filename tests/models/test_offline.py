"""Offline model aliases: resolution errors (fast) and real conversions (marked real_model)."""
from __future__ import annotations

import pytest
import torch

from unlearnlm.errors import ModelError
from unlearnlm.models.loading import load_model, load_tokenizer, resolve_model
from unlearnlm.models.offline import OFFLINE_MODELS, prepare_offline_model


def test_resolve_model_errors(tmp_path):
    with pytest.raises(ModelError, match="no such directory"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="holds no model"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelError, match="safetensors"):
        resolve_model(str(tmp_path))


def test_unknown_alias_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="smollm2-135m"):
        prepare_offline_model("gpt-17", tmp_path)


def test_tiny_model_folder_resolves(tiny_model_dir):
    assert resolve_model(str(tiny_model_dir)) == str(tiny_model_dir)


@pytest.mark.real_model
@pytest.mark.parametrize("alias,prompt", [("smollm2-135m", "chat"), ("gemma3-270m", "plain")])
def test_offline_model_converts_and_loads(alias, prompt, tmp_path_factory):
    """The GGUF in the wheel(s) becomes a plain safetensors HF folder, loadable by transformers."""
    from transformers import AutoModelForCausalLM

    from unlearnlm.data.prompts import PromptFormat, encode_qa

    path = prepare_offline_model(alias)  # user cache: converted once, reused
    assert (path / "model.safetensors").is_file() and not list(path.glob("*.bin"))
    assert prepare_offline_model(alias) == path  # cached
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tok = load_tokenizer(str(path))
    fmt = PromptFormat.for_tokenizer(tok)
    assert fmt.kind == prompt
    ex = encode_qa(tok, fmt, "What is the capital of France?", "Paris.")
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ex["input_ids"]])).logits
    assert torch.isfinite(logits).all()
    assert logits.shape[-1] >= len(tok) - 64
    assert OFFLINE_MODELS[alias].prompt_format in ("auto", prompt)


@pytest.mark.real_model
def test_smollm2_answers_a_known_fact():
    """De-quantisation kept the model's knowledge: it ranks the right answer above a wrong one."""
    from unlearnlm.data.prompts import PromptFormat
    from unlearnlm.evaluation.likelihood import nll_means

    path = str(prepare_offline_model("smollm2-135m"))
    model, tok = load_model(path).eval(), load_tokenizer(path)
    fmt = PromptFormat.for_tokenizer(tok)
    right, wrong = nll_means(model, tok, fmt, [("What is the capital of France?", "The capital of France is Paris."),
                                                ("What is the capital of France?", "The capital of France is Tokyo.")],
                             batch_size=2, progress=False)
    assert right < wrong
