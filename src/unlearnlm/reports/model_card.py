"""A ``README.md`` model card in every saved model folder, so a pushed model explains itself.

    write_model_card(model_dir)                       # from its unlearnlm_manifest.json
    write_model_card(model_dir, summary, judges)      # + the evaluation table, once evaluated

The card holds the Hugging Face front matter (library, tags, base model when it is a hub id),
what the model is (fine-tuned target or unlearned model, base, method, forget set), its
hyperparameters, and the evaluation of that model with the judges used. See
``docs/method.md`` section 7 for the metrics.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from unlearnlm.evaluation.harness import AGGREGATE_PREFIX, lm_eval_results
from unlearnlm.io import read_json, write_text
from unlearnlm.reports.runs import METRIC_LONG
from unlearnlm.training.layout import ModelFolder

CARD = "README.md"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
AGGREGATE_NAMES = {"model_utility": "Model Utility (MU)", "mu_retain": "MU on the retain set",
                   "forget_efficacy": "Forget Efficacy (FE)", "forget_quality": "Forget Quality (FQ)",
                   "tofu_model_utility": "TOFU Model Utility"}


def _front_matter(manifest: dict) -> str:
    tags = ["unlearnlm", "machine-unlearning"] + ([manifest["method"]] if manifest.get("method") else [])
    lines = ["---", "library_name: transformers", "tags:", *(f"- {t}" for t in tags)]
    base = str(manifest.get("base_model") or "")
    if HUB_ID.match(base) and not Path(base).exists():
        lines.append(f"base_model: {base}")
    if manifest.get("split"):
        lines += ["datasets:", "- locuslab/TOFU" if manifest["split"] != "real_world" else "- jinzhuoran/RWKU"]
    return "\n".join(lines + ["---", ""])


def _what(manifest: dict) -> list[str]:
    kind, tasks = manifest.get("kind", "model"), ", ".join(manifest.get("forget_tasks") or manifest.get("tasks") or [])
    if kind == "unlearned":
        return [f"Unlearned with **{manifest['method']}** from `{manifest.get('base_model')}`, forgetting "
                f"{manifest.get('split')} task {tasks} ({manifest.get('n_forget')} forget QA, "
                f"{manifest.get('n_retain')} retain QA); reference model `{manifest.get('ref_model')}`."]
    if kind.startswith("finetuned-"):
        which = kind.split("-", 1)[1]
        knows = "including" if which == "target" else "without"
        return [f"The {which} model: `{manifest.get('base_model')}` fine-tuned on {manifest.get('n_examples')} QA, "
                f"{knows} {manifest.get('split')} task {tasks}."]
    return [f"A model saved by unlearnlm ({kind})."]


def _hyperparameters(manifest: dict) -> list[str]:
    settings = dict(manifest.get("settings") or {})
    train = settings.pop("train", None) or manifest.get("hyperparameters") or {}
    settings.pop("per_method", None)
    shown = {k: v for k, v in {**settings, **train}.items() if v is not None}
    return ["| option | value |", "| --- | --- |", *(f"| {k} | {json.dumps(v)} |" for k, v in shown.items())]


def _evaluation(summary: dict, judges: dict | None) -> list[str]:
    aggregates = {k: v for k, v in (summary.get("aggregates") or {}).items()
                  if v is not None and not k.startswith(AGGREGATE_PREFIX)}
    lines = ["| aggregate | value |", "| --- | ---: |",
             *(f"| {AGGREGATE_NAMES.get(k, k)} | {v:.3f} |" for k, v in aggregates.items())]
    for task, (value, stderr) in lm_eval_results(summary.get("aggregates") or {}).items():
        lines.append(f"| lm-eval {task} | {value:.3f}" + (f" +- {stderr:.3f}" if stderr is not None else "") + " |")
    sets = summary.get("sets") or {}
    metrics = list(next(iter(sets.values()), {}))
    if metrics:
        lines += ["", "| set | " + " | ".join(METRIC_LONG.get(m, m) for m in metrics) + " |",
                  "| --- |" + " ---: |" * len(metrics)]
        lines += [f"| {name} | " + " | ".join(f"{values.get(m, float('nan')):.3f}" for m in metrics) + " |"
                  for name, values in sets.items()]
    if judges:
        lines += ["", f"Judges: entailment by `{judges.get('nli')}` (held-out accuracy "
                      f"{judges.get('nli_heldout_accuracy')}), cosine similarity by `{judges.get('embedder')}`."]
    return lines


def model_card(manifest: dict, name: str, summary: dict | None = None, judges: dict | None = None) -> str:
    lines = [_front_matter(manifest), f"# {name}", "", *_what(manifest), "",
             "Made with [unlearnlm](https://pypi.org/project/unlearnlm/) "
             f"{(manifest.get('environment') or {}).get('packages', {}).get('unlearnlm') or ''}".rstrip() + ".",
             "", "## Hyperparameters", "", *_hyperparameters(manifest), "", "## Evaluation", ""]
    lines += _evaluation(summary, judges) if summary else ["Not evaluated yet (`unlearnlm eval --model THIS_FOLDER`)."]
    lines += ["", "## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
              f'model = AutoModelForCausalLM.from_pretrained("{name}")',
              f'tokenizer = AutoTokenizer.from_pretrained("{name}")', "```", ""]
    return "\n".join(lines)


def write_model_card(model_dir: str | Path, summary: dict | None = None, judges: dict | None = None) -> Path | None:
    """Write ``model_dir/README.md`` from its manifest (and evaluation); None for a folder
    unlearnlm did not make (never written into)."""
    folder = ModelFolder(Path(model_dir))
    if not folder.is_done:
        return None
    path = folder.path / CARD
    write_text(path, model_card(read_json(folder.manifest), folder.path.name, summary, judges))
    return path
