"""A Hugging Face NLI classifier as the entailment judge (docs/method.md, section 7).

    judge = NLIJudge(name_or_path)
    judge.is_entailment(premises, hypotheses)      # list[bool]

The paper's judge is ``sileod/deberta-v3-base-tasksource-nli``; any Hugging Face NLI
classifier works by name or path, the offline judge's folder too. Pick one with
:func:`unlearnlm.evaluation.judges.factory.load_nli_judge`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from unlearnlm.errors import ModelError
from unlearnlm.evaluation.judges.embedder import hub_offline
from unlearnlm.evaluation.judges.labels import ENTAILMENT, JUDGE_INFO, entailment_label_id, normalize_labels
from unlearnlm.evaluation.judges.quiet import quiet_transformers


def _local_dir(spec: str) -> Path | None:
    p = Path(spec).expanduser()
    return p if p.is_dir() else None


class NLIJudge:
    """A Hugging Face sequence-classification NLI model (hub name or local folder).

    Safetensors weights only; no remote code. ``predict`` returns normalised labels in input
    order; ``is_entailment`` the booleans the entailment score needs."""

    def __init__(
        self,
        name_or_path: str,
        device: str = "cpu",
        batch_size: int = 64,
        max_length: int = 512,
        name: str | None = None,
    ):
        import torch  # noqa: F401  (import errors surface here, not at module import)
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if not name_or_path or not str(name_or_path).strip():
            raise ModelError("NLI judge: empty model name")
        spec = str(name_or_path)
        local = _local_dir(spec)
        target = str(local.resolve()) if local else spec
        self.path = local.resolve() if local else None
        self.device = device
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ModelError(f"NLI judge batch_size must be >= 1, got {batch_size}")
        kwargs = dict(trust_remote_code=False, local_files_only=bool(local) or hub_offline())
        try:
            with quiet_transformers():
                self.tokenizer = AutoTokenizer.from_pretrained(target, **kwargs)
                self.model = AutoModelForSequenceClassification.from_pretrained(
                    target, use_safetensors=True, **kwargs
                )
        except Exception as e:  # noqa: BLE001
            if local:
                where = "local folder"
            elif hub_offline():
                where = "hub model, offline mode (HF_HUB_OFFLINE is set: only the HF cache is used)"
            else:
                where = "hub model"
            raise ModelError(
                f"cannot load NLI model {spec!r} ({where}; safetensors weights required): "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
                + "; use --nli-model offline for the offline judge"
            ) from None
        self.model.to(device)
        self.model.eval()
        id2label = getattr(self.model.config, "id2label", None) or {}
        self.entailment_id = entailment_label_id(id2label, spec)
        self.id2label = normalize_labels(id2label, self.entailment_id)
        limits = [int(max_length)]
        tml = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tml, int) and 0 < tml < 100_000:
            limits.append(tml)
        mpe = getattr(self.model.config, "max_position_embeddings", None)
        if isinstance(mpe, int) and mpe > 0:
            limits.append(mpe)
        self.max_length = min(limits)

        self._info: dict[str, Any] = {}
        if self.path is not None and (self.path / JUDGE_INFO).is_file():
            try:
                self._info = json.loads((self.path / JUDGE_INFO).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                self._info = {}
        self.name = name or self._info.get("name") or spec

    @property
    def info(self) -> dict[str, Any]:
        """For reports: name, path, heldout_accuracy (None when unknown), training pairs, ..."""
        i = self._info
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "heldout_accuracy": i.get("heldout_accuracy"),
            "heldout_per_class_recall": i.get("heldout_per_class_recall"),
            "n_train_pairs": i.get("n_train_pairs"),
            "n_heldout_pairs": i.get("n_heldout_pairs"),
            "excluded_authors": i.get("excluded_authors"),
            "eligible_authors": i.get("eligible_authors"),
            "base_model": i.get("base_model"),
            "labels": [self.id2label[k] for k in sorted(self.id2label)],
        }

    def predict(
        self,
        premises: Sequence[str],
        hypotheses: Sequence[str],
        batch_size: int | None = None,
        progress: bool = False,
    ) -> list[str]:
        """One normalised label per (premise, hypothesis) pair, in input order."""
        import torch

        if isinstance(premises, str) or isinstance(hypotheses, str):
            raise TypeError("predict() takes sequences of strings, not single strings")
        if len(premises) != len(hypotheses):
            raise ValueError(f"predict(): {len(premises)} premises vs {len(hypotheses)} hypotheses")
        n = len(premises)
        if n == 0:
            return []
        bs = int(batch_size or self.batch_size)
        prem = ["" if p is None else str(p) for p in premises]
        hyp = ["" if h is None else str(h) for h in hypotheses]
        order = sorted(range(n), key=lambda i: -(len(prem[i]) + len(hyp[i])))
        pred: list[int] = [0] * n
        starts = range(0, n, bs)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="NLI judge", unit="batch", leave=False)
        with torch.inference_mode():
            for s in starts:
                idx = order[s : s + bs]
                enc = self.tokenizer(
                    [prem[i] for i in idx],
                    [hyp[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                logits = self.model(**enc).logits
                for i, c in zip(idx, logits.argmax(dim=-1).tolist()):
                    pred[i] = c
        return [self.id2label.get(c, str(c)) for c in pred]

    def is_entailment(
        self, premises: Sequence[str], hypotheses: Sequence[str], batch_size: int | None = None
    ) -> list[bool]:
        return [lab == ENTAILMENT for lab in self.predict(premises, hypotheses, batch_size)]

    def __repr__(self) -> str:
        return f"NLIJudge({self.name!r}, device={self.device!r})"
