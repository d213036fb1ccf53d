"""Saved folders carry the transformers 4.x keys with the values of the 5.x ones."""
from __future__ import annotations

import json

import pytest

from unlearnlm.models.compat import LEGACY_TOKENIZER_CLASS, add_legacy_keys


def _write(folder, config: dict, tokenizer_class: str = "TokenizersBackend"):
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": tokenizer_class}))


@pytest.mark.parametrize("config, expected", [
    # SmolLM2 / Llama: a flat default RoPE
    ({"rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}}, {"rope_theta": 100000.0}),
    # Llama-3.x: scaled RoPE -> rope_theta and 4.x's rope_scaling
    ({"rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 32.0}},
     {"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 32.0}}),
    # Gemma-3: one RoPE per attention type -> rope_theta (global) and rope_local_base_freq
    ({"rope_parameters": {"full_attention": {"rope_theta": 1000000.0, "rope_type": "default"},
                          "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}}},
     {"rope_theta": 1000000.0, "rope_local_base_freq": 10000.0}),
])
def test_legacy_rope_keys(tmp_path, config, expected):
    _write(tmp_path, config)
    add_legacy_keys(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert {k: saved[k] for k in expected} == expected
    assert saved["rope_parameters"] == config["rope_parameters"]  # the 5.x keys stay
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == LEGACY_TOKENIZER_CLASS


def test_existing_keys_and_other_tokenizer_classes_are_kept(tmp_path):
    _write(tmp_path, {"rope_theta": 7.0, "rope_parameters": {"rope_theta": 100000.0}}, "GPT2Tokenizer")
    add_legacy_keys(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["rope_theta"] == 7.0
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "GPT2Tokenizer"


def test_a_saved_tiny_model_carries_them_and_still_loads(tiny_model_dir, tmp_path):
    """A real 5.x save: rope_theta equals rope_parameters' value (not 4.x's silent 10000), and
    transformers 5.x still loads the folder with the same config and tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    add_legacy_keys(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["rope_theta"] == saved["rope_parameters"]["rope_theta"] == model.config.rope_parameters["rope_theta"]
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == LEGACY_TOKENIZER_CLASS
    assert AutoConfig.from_pretrained(tmp_path).rope_parameters == model.config.rope_parameters
    text = "Question: Who wrote it?\nAnswer:"
    assert AutoTokenizer.from_pretrained(tmp_path)(text)["input_ids"] == tok(text)["input_ids"]
