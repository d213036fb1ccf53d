"""Every attack, one registration each (docs/method.md, section 9).

    ATTACKS.get("quant4").apply        # quantize.quant4
    unlearnlm attacks                  # lists them

A *model* attack builds a changed model from the attacked one (``apply(ctx, model_dir,
out_dir)``, a cached folder); a *prompt* attack keeps the model and changes what is asked
(``apply(ctx, rows) -> (rows, edit)``, ``edit(fmt)`` the prompt format asked in). ``scored`` says which forget questions are
evaluated: the evaluated forget set, or the half of the forget set the relearning attacks never
train on. ``baseline`` says what the target is compared under: the target attacked the same way
(``attacked``: the quantised target, the target under the same prompt) or the target as it is
(``plain``: relearning the target would teach it what it already knows).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from unlearnlm.attacks import prompts, quantize, relearn
from unlearnlm.registry import Registry


@dataclass(frozen=True)
class Attack:
    name: str
    kind: Literal["model", "prompt"]
    apply: Callable
    scored: Literal["forget", "second_half"]
    baseline: Literal["attacked", "plain"]
    settings: tuple[str, ...]  # the eval.attack fields it reads (a change recomputes it)
    description: str


ATTACKS: Registry[Attack] = Registry("attack")
_RELEARN = ("seed", "relearn_epochs", "relearn_lr")
for _a in (
    Attack("relearn", "model", relearn.relearn, "second_half", "plain", _RELEARN,
           "fine-tune on one half of the forget set, score the other half"),
    Attack("relearn_retain", "model", relearn.relearn_retain, "second_half", "plain", _RELEARN,
           "fine-tune on as many retain QA (benign fine-tuning), score the same forget half"),
    Attack("quant8", "model", quantize.quant8, "forget", "attacked", ("quant_group_size",),
           "decoder weights quantised to 8 bits (torchao, round-to-nearest, groupwise)"),
    Attack("quant4", "model", quantize.quant4, "forget", "attacked", ("quant_group_size",),
           "decoder weights quantised to 4 bits (torchao, round-to-nearest, groupwise)"),
    Attack("paraphrase", "prompt", prompts.paraphrase, "forget", "attacked", (),
           "the forget questions rephrased (the data's paraphrased_question)"),
    Attack("fewshot", "prompt", prompts.fewshot, "forget", "attacked", ("seed", "fewshot_k"),
           "k retain-set QA pairs asked and answered before the question"),
    Attack("system_prompt", "prompt", prompts.system_prompt, "forget", "attacked", ("system_prompt",),
           "a system prompt that asks for full, accurate answers"),
):
    ATTACKS.add(_a.name, _a, _a.description)


def attack_errors(cfg) -> list[str]:
    """Problems of ``eval.attacks`` and ``eval.attack``, one line each."""
    names, s = cfg.eval.attacks, cfg.eval.attack
    errors = [f"eval.attacks[{i}]: {ATTACKS.unknown_message(n)}" for i, n in enumerate(names) if n not in ATTACKS]
    if len(set(names)) < len(names):
        errors.append(f"eval.attacks: each attack once, got {names!r}")
    if names and cfg.scenario == "continual":
        errors.append("eval.attacks: attacks run in the fictitious and real_world scenarios, not continual")
    if s.relearn_epochs <= 0:
        errors.append(f"eval.attack.relearn_epochs: must be > 0, got {s.relearn_epochs}")
    if s.relearn_lr is not None and s.relearn_lr <= 0:
        errors.append(f"eval.attack.relearn_lr: must be > 0 (or null: finetune.train.lr), got {s.relearn_lr}")
    if s.quant_group_size < 1 or s.fewshot_k < 1:
        errors.append("eval.attack: quant_group_size and fewshot_k must be >= 1")
    if not s.system_prompt.strip():
        errors.append("eval.attack.system_prompt: must not be empty")
    return errors
