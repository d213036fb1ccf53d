"""NLI labels shared by the judges (docs/method.md, section 7).

The three label names, the judge folder's info file, the NLI side of a short answer
(``nli_reference``) and the mapping of a model's ``id2label`` onto the three labels.
"""
from __future__ import annotations

from typing import Any, Mapping

from unlearnlm.errors import ModelError

ENTAILMENT, NEUTRAL, CONTRADICTION = "entailment", "neutral", "contradiction"
LABELS = (ENTAILMENT, NEUTRAL, CONTRADICTION)
#: the paper's judge; needs the hub (or a populated HF cache)
PAPER_NLI_MODEL = "sileod/deberta-v3-base-tasksource-nli"
JUDGE_INFO = "judge_info.json"


def nli_reference(question: str, answer: str) -> str:
    """The ground truth as an NLI side when it is a short answer ("William Shakespeare"):
    prefixed by its question, so it states a fact a generation can entail or contradict."""
    return f"{question} {answer}"


def _is_negated(label: str) -> bool:
    return label.startswith(("not", "non", "no_", "no-", "no "))


def entailment_label_id(id2label: Mapping[Any, str], model_name: str = "model") -> int:
    """The class id whose label names entailment (case-insensitive "entail", not "not_entailment")."""
    labels = {int(k): str(v).strip().lower() for k, v in (id2label or {}).items()}
    hits = [i for i, lab in labels.items() if "entail" in lab and not _is_negated(lab)]
    if len(hits) > 1:
        exact = [i for i in hits if labels[i] == ENTAILMENT]
        if len(exact) == 1:
            return exact[0]
        raise ModelError(
            f"{model_name}: several classes look like entailment in config.id2label ({labels}); "
            "use an NLI model with one 'entailment' class"
        )
    if not hits:
        shown = ", ".join(f"{i}: {lab!r}" for i, lab in sorted(labels.items())) or "none"
        raise ModelError(
            f"{model_name} is not an NLI classifier: no entailment class in config.id2label "
            f"({shown}); use an NLI model such as {PAPER_NLI_MODEL} or the 'offline' judge"
        )
    return hits[0]


def normalize_labels(id2label: Mapping[Any, str], entail_id: int) -> dict[int, str]:
    """id -> "entailment" / "neutral" / "contradiction" (other labels: lower-cased as they are)."""
    out = {}
    for k, v in id2label.items():
        i, lab = int(k), str(v).strip().lower()
        if i == entail_id:
            out[i] = ENTAILMENT
        elif lab.startswith("contradict"):
            out[i] = CONTRADICTION
        elif lab.startswith("neutral"):
            out[i] = NEUTRAL
        else:
            out[i] = lab
    return out
