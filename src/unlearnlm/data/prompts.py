"""Prompt formats and tokenisation of question/answer pairs.

    fmt = PromptFormat.for_tokenizer(tokenizer, model_cfg)
    ex = encode_qa(tokenizer, fmt, "Who wrote X?", "Jane Doe.", mask_question=True)
    # ex["input_ids"] = prompt ids + answer ids + EOS; ex["labels"] = -100 over the prompt

Chat template when the tokenizer has one (``auto``); ``Question: {q}\\nAnswer: {a}`` otherwise;
``custom`` uses the configured tags.
"""
from __future__ import annotations

from dataclasses import dataclass

from unlearnlm.errors import ModelError

IGNORE = -100


@dataclass(frozen=True)
class PromptFormat:
    kind: str  # "chat" | "plain" | "custom"
    question_start: str = "Question: "
    question_end: str = "\n"
    answer_start: str = "Answer:"
    answer_prefix: str = " "
    system_prompt: str | None = None
    # Earlier (question, answer) turns before the question: the few-shot prompt attack.
    fewshot: tuple[tuple[str, str], ...] = ()

    @classmethod
    def for_tokenizer(cls, tokenizer, model_cfg=None) -> "PromptFormat":
        kind = getattr(model_cfg, "prompt_format", "auto") if model_cfg is not None else "auto"
        if kind == "auto":
            kind = "chat" if getattr(tokenizer, "chat_template", None) else "plain"
        if kind == "chat" and not getattr(tokenizer, "chat_template", None):
            raise ModelError("model.prompt_format=chat but the tokenizer has no chat template; use plain or custom")
        if kind == "chat":
            return cls("chat", system_prompt=getattr(model_cfg, "system_prompt", None), answer_prefix="")
        if kind == "plain" or model_cfg is None:
            return cls("plain")
        return cls(
            "custom",
            question_start=model_cfg.question_start,
            question_end=model_cfg.question_end,
            answer_start=model_cfg.answer_start,
            answer_prefix=model_cfg.answer_prefix,
        )

    def prompt(self, tokenizer, question: str) -> str:
        """Text the model sees before its answer (after the system prompt and few-shot turns, if any)."""
        if self.kind == "chat":
            messages = [m for q, a in self.fewshot for m in ({"role": "user", "content": q},
                                                             {"role": "assistant", "content": a})]
            messages.append({"role": "user", "content": question})
            if self.system_prompt is not None:
                messages.insert(0, {"role": "system", "content": self.system_prompt})
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        system = "" if self.system_prompt is None else f"{self.system_prompt}\n\n"
        shots = "".join(f"{self._plain(q)}{self.answer_prefix}{a}\n\n" for q, a in self.fewshot)
        return f"{system}{shots}{self._plain(question)}"

    def _plain(self, question: str) -> str:
        return f"{self.question_start}{question}{self.question_end}{self.answer_start}"

    @property
    def adds_special_tokens(self) -> bool:
        # A chat template writes its own BOS; a plain prompt gets the tokenizer's (Gemma needs it).
        return self.kind != "chat"


def eos_id(tokenizer) -> int:
    if tokenizer.eos_token_id is None:
        name = getattr(tokenizer, "name_or_path", "the tokenizer")
        raise ModelError(f"{name}: tokenizer has no EOS token; set tokenizer.eos_token before training")
    return int(tokenizer.eos_token_id)


def prompt_ids(tokenizer, fmt: PromptFormat, question: str) -> list[int]:
    return tokenizer(fmt.prompt(tokenizer, question), add_special_tokens=fmt.adds_special_tokens)["input_ids"]


def answer_ids(tokenizer, fmt: PromptFormat, answer: str) -> list[int]:
    """Answer tokens followed by EOS (the labels of a training example)."""
    ids = tokenizer(fmt.answer_prefix + answer, add_special_tokens=False)["input_ids"]
    return ids + [eos_id(tokenizer)]


def encode_qa(
    tokenizer, fmt: PromptFormat, question: str, answer: str, mask_question: bool = True, max_length: int = 512
) -> dict[str, list[int]]:
    """input_ids = prompt + answer + EOS; labels = answer + EOS (prompt too when not masked)."""
    q = prompt_ids(tokenizer, fmt, question)
    a = answer_ids(tokenizer, fmt, answer)
    ids = (q + a)[:max_length]
    labels = ((q if not mask_question else [IGNORE] * len(q)) + a)[:max_length]
    return {"input_ids": ids, "labels": labels}
