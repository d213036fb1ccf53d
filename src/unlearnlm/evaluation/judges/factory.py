"""Picks the judges: the NLI judge of the entailment score and the embedder of cosine
similarity (docs/method.md, section 7).

    judges = load_judges(cfg, exclude_questions_for(cfg))   # both, once per process
    judge = load_nli_judge("offline", data_dir, eval_questions, cache_dir)
    judge.is_entailment(premises, hypotheses)      # list[bool]

``"offline"`` (the default) builds or reuses the offline judge
(:mod:`unlearnlm.evaluation.judges.nli_offline`); anything else is a Hugging Face NLI model
(:class:`unlearnlm.evaluation.judges.nli.NLIJudge`).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Iterable

from unlearnlm.config.schema import RunConfig
from unlearnlm.errors import ConfigError
from unlearnlm.evaluation.judges.nli import NLIJudge
from unlearnlm.evaluation.judges.nli_offline import build_offline_nli
from unlearnlm.utils import log

OFFLINE_SPEC = "offline"


def load_nli_judge(
    spec: str | None,
    data_dir: str | os.PathLike | None,
    exclude_questions: Iterable[str],
    cache_dir: str | os.PathLike,
    *,
    device: str = "cpu",
    batch_size: int = 64,
    progress: bool = True,
    **build_kwargs: Any,
) -> NLIJudge:
    """``spec`` "offline" (the default) builds or reuses the offline judge; anything else is a
    Hugging Face NLI model name or local folder (the paper: sileod/deberta-v3-base-tasksource-nli)."""
    if spec is None or not str(spec).strip() or str(spec).strip().lower() == OFFLINE_SPEC:
        path = build_offline_nli(data_dir, exclude_questions, cache_dir, progress=progress, **build_kwargs)
        return NLIJudge(str(path), device=device, batch_size=batch_size)
    if build_kwargs:
        raise ConfigError(f"NLI build options {sorted(build_kwargs)} only apply to the 'offline' judge")
    return NLIJudge(str(spec), device=device, batch_size=batch_size)


# --------------------------------------------------------------------------- both judges
@dataclass
class Judges:
    """The sentence embedder (``.encode(texts)``, ``.name``) and NLI judge
    (``.is_entailment(premises, hypotheses)``, ``.name``, ``.info``) shared by all models."""

    embedder: Any
    nli: Any

    def describe(self) -> dict:
        info = getattr(self.nli, "info", None) or {}
        return {
            "embedder": self.embedder.name,
            "nli": self.nli.name,
            "nli_heldout_accuracy": info.get("heldout_accuracy"),
        }


def load_judges(cfg: RunConfig, exclude_questions: Iterable[str], progress: bool = True) -> Judges:
    """Embedder ``cfg.eval.embedder`` and NLI judge ``cfg.eval.nli`` (the offline one is built
    once, without the authors of ``exclude_questions``, and cached under <cache>/judges)."""
    from unlearnlm.data.loading import resolve_data_dir
    from unlearnlm.evaluation.judges.embedder import SentenceEmbedder
    from unlearnlm.models.offline import cache_root

    start = time.time()
    embedder = SentenceEmbedder(cfg.eval.embedder)
    nli = load_nli_judge(
        cfg.eval.nli,
        resolve_data_dir(cfg.data.data_dir),
        exclude_questions,
        cache_root(cfg.model.cache_dir) / "judges",
        progress=progress,
    )
    log(f"judges ready in {time.time() - start:.1f}s: embedder {embedder.name}, NLI {nli.name}")
    return Judges(embedder, nli)


def exclude_questions_for(cfg: RunConfig) -> set[str]:
    """Every question of the scenario's TOFU evaluation sets (all rows, not only the first
    ds_size, so the offline judge's cache key does not depend on ds_size). Real-world
    evaluation holds no TOFU question: nothing to exclude."""
    from unlearnlm.data import tofu
    from unlearnlm.data.loading import resolve_data_dir

    if cfg.data.split == tofu.REAL_WORLD:
        return set()
    sets = tofu.eval_sets(resolve_data_dir(cfg.data.data_dir), cfg.data.split, list(cfg.data.tasks), 10**9)
    return {row["question"] for rows in sets.values() for row in rows}
