"""Prompt formats (chat template, plain, custom tags) and label masking of encode_qa."""
from __future__ import annotations

import pytest

from unlearnlm.config.schema import ModelConfig
from unlearnlm.data.prompts import IGNORE, PromptFormat, answer_ids, encode_qa, eos_id, prompt_ids
from unlearnlm.errors import ModelError

Q, A = "Who wrote 'The Tin Lantern'?", "Mira Okafor wrote it in 1987."
ASSISTANT_HEADER = "<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def _shared_tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


@pytest.fixture
def tok(_shared_tok, monkeypatch):
    """The SmolLM2 tokenizer (with chat template); changes a test makes through ``monkeypatch``
    (chat_template, eos_token) are undone after it."""
    assert _shared_tok.chat_template and _shared_tok.eos_token_id is not None, "a test leaked a change"
    return _shared_tok


@pytest.fixture
def plain_tok(tok, monkeypatch):
    """The same tokenizer without its chat template."""
    monkeypatch.setattr(tok, "chat_template", None)
    return tok


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


# --------------------------------------------------------------------------- formats
def test_auto_picks_chat_template(tok):
    fmt = PromptFormat.for_tokenizer(tok)
    assert fmt.kind == "chat" and fmt.answer_prefix == ""
    prompt = fmt.prompt(tok, Q)
    assert prompt.endswith(ASSISTANT_HEADER)
    assert Q in prompt
    assert not fmt.adds_special_tokens  # the template writes its own special tokens


def test_chat_system_prompt_override(tok):
    fmt = PromptFormat.for_tokenizer(tok, ModelConfig(system_prompt="Answer in one sentence."))
    prompt = fmt.prompt(tok, Q)
    assert "<|im_start|>system\nAnswer in one sentence.<|im_end|>" in prompt
    assert "SmolLM" not in prompt  # the template's default system prompt is replaced
    assert prompt.index("Answer in one sentence.") < prompt.index(Q)
    assert prompt.endswith(ASSISTANT_HEADER)
    default = PromptFormat.for_tokenizer(tok, ModelConfig()).prompt(tok, Q)
    assert "Answer in one sentence." not in default


def test_chat_answer_tokens_are_the_answer_then_eos(tok):
    fmt = PromptFormat.for_tokenizer(tok)
    assert answer_ids(tok, fmt, A) == _ids(tok, A) + [tok.eos_token_id]


def test_plain_format(plain_tok):
    tok = plain_tok
    fmt = PromptFormat.for_tokenizer(tok)
    assert fmt.kind == "plain"
    assert fmt.prompt(tok, Q) == f"Question: {Q}\nAnswer:"
    assert answer_ids(tok, fmt, A) == _ids(tok, " " + A) + [tok.eos_token_id]
    ex = encode_qa(tok, fmt, Q, A)
    assert tok.decode(ex["input_ids"]) == f"Question: {Q}\nAnswer: {A}{tok.eos_token}"


def test_plain_format_explicit_on_a_chat_tokenizer(tok):
    fmt = PromptFormat.for_tokenizer(tok, ModelConfig(prompt_format="plain", question_start="ignored"))
    assert fmt.kind == "plain"
    assert fmt.prompt(tok, Q) == f"Question: {Q}\nAnswer:"


def test_custom_tags(tok):
    cfg = ModelConfig(prompt_format="custom", question_start="[INST] ", question_end=" [/INST]",
                      answer_start="", answer_prefix=" ")
    fmt = PromptFormat.for_tokenizer(tok, cfg)
    assert fmt.kind == "custom"
    assert fmt.prompt(tok, Q) == f"[INST] {Q} [/INST]"
    ex = encode_qa(tok, fmt, Q, A)
    assert ex["input_ids"] == prompt_ids(tok, fmt, Q) + _ids(tok, " " + A) + [tok.eos_token_id]
    assert tok.decode(ex["input_ids"]).startswith(f"[INST] {Q} [/INST] {A}")


def test_chat_format_without_template_is_a_model_error(plain_tok):
    with pytest.raises(ModelError, match="chat template"):
        PromptFormat.for_tokenizer(plain_tok, ModelConfig(prompt_format="chat"))


def test_missing_eos_is_a_model_error(plain_tok):
    tok = plain_tok
    eos = tok.eos_token
    tok.eos_token = None  # (monkeypatch cannot undo this: transformers serves eos_token via __getattr__)
    try:
        assert tok.eos_token_id is None
        with pytest.raises(ModelError, match="EOS"):
            eos_id(tok)
        fmt = PromptFormat.for_tokenizer(tok)
        with pytest.raises(ModelError, match="EOS") as err:
            encode_qa(tok, fmt, Q, A)
        assert "\n" not in str(err.value)
    finally:
        tok.eos_token = eos
    assert tok.eos_token_id is not None


# --------------------------------------------------------------------------- label masking
@pytest.mark.parametrize("kind", ["chat", "plain"])
def test_masked_question_labels(tok, kind, monkeypatch):
    if kind == "plain":
        monkeypatch.setattr(tok, "chat_template", None)
    fmt = PromptFormat.for_tokenizer(tok)
    n_prompt = len(prompt_ids(tok, fmt, Q))
    ex = encode_qa(tok, fmt, Q, A, mask_question=True)
    ids, labels = ex["input_ids"], ex["labels"]
    assert len(ids) == len(labels) > n_prompt
    assert labels[:n_prompt] == [IGNORE] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:]
    assert ids[n_prompt:] == answer_ids(tok, fmt, A)
    assert labels[-1] == tok.eos_token_id == ids[-1]
    assert IGNORE not in labels[n_prompt:]


def test_unmasked_question_labels_equal_input_ids(tok):
    fmt = PromptFormat.for_tokenizer(tok)
    ex = encode_qa(tok, fmt, Q, A, mask_question=False)
    assert ex["labels"] == ex["input_ids"]
    assert IGNORE not in ex["labels"]
    masked = encode_qa(tok, fmt, Q, A, mask_question=True)
    assert masked["input_ids"] == ex["input_ids"]


@pytest.mark.parametrize("mask_question", [True, False])
def test_truncation_at_max_length(tok, mask_question):
    fmt = PromptFormat.for_tokenizer(tok)
    full = encode_qa(tok, fmt, Q, A, mask_question=mask_question)
    n = len(full["input_ids"])
    for max_length in (n - 3, len(prompt_ids(tok, fmt, Q)) - 1, 5):
        cut = encode_qa(tok, fmt, Q, A, mask_question=mask_question, max_length=max_length)
        assert len(cut["input_ids"]) == len(cut["labels"]) == max_length
        assert cut["input_ids"] == full["input_ids"][:max_length]
        assert cut["labels"] == full["labels"][:max_length]
    same = encode_qa(tok, fmt, Q, A, mask_question=mask_question, max_length=n)
    assert same == full
