"""The models a run starts from: fine-tuned here (cached by content), or given by the user
(``model.target`` / ``model.retain``: a hub id or a folder, e.g. the published TOFU targets).

    models = start_models(cfg, ("target", "retain"))   # {"target": StartModel, ...}

A given model is never written into: its evaluations are cached under
``<cache>/evaluations/<name>-<key>/`` instead of inside the folder (``docs/method.md`` section 6).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from unlearnlm.config.schema import RunConfig
from unlearnlm.models.loading import local_model
from unlearnlm.models.offline import cache_root
from unlearnlm.training.finetune import finetune_models
from unlearnlm.training.layout import ModelFolder
from unlearnlm.utils import log


def weights_sha256(path: Path) -> str | None:
    """sha256 over the folder's ``*.safetensors`` files in name order (None for a folder without
    them): what a resumed run checks, so that one run never mixes two different targets."""
    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            while block := fh.read(1 << 24):
                h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class StartModel:
    path: Path
    source: dict  # what the run manifest records: where the model came from
    evaluations: Path  # where its evaluations are cached


def _given_key(path: Path) -> str:
    """Identity of a given folder: its location, config and the size and time of each weight file
    (a hub snapshot's path holds the commit hash)."""
    files = sorted(p for p in path.iterdir() if p.suffix == ".safetensors" or p.name == "config.json")
    stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps([str(path.resolve()), stamp]).encode()).hexdigest()[:12]


def _evaluations_dir(cfg: RunConfig, path: Path) -> Path:
    """Inside a folder unlearnlm made or converted; for anyone else's folder, in the cache."""
    cache = cache_root(cfg.model.cache_dir)
    if ModelFolder(path).is_done or path.resolve().is_relative_to(cache.resolve()):
        return path / "evaluations"
    return cache / "evaluations" / f"{path.name}-{_given_key(path)}"


def _given(cfg: RunConfig, option: str, spec: str) -> StartModel:
    path = local_model(spec, cfg.model.cache_dir)
    if option != "model.name":
        log(f"[{option.split('.')[1]}] using {spec} ({path}); not fine-tuned here")
    return StartModel(path, {"from": option, "spec": spec, "path": str(path), "weights_sha256": weights_sha256(path)},
                      _evaluations_dir(cfg, path))


def start_models(cfg: RunConfig, which: tuple[str, ...]) -> dict[str, StartModel]:
    """The target (and retain model) of a run: given ones first, the rest fine-tuned or reused."""
    given = {"target": cfg.model.target, "retain": cfg.model.retain}
    models = {w: _given(cfg, f"model.{w}", given[w]) for w in which if given[w]}
    todo = tuple(w for w in which if w not in models)
    for w, path in (finetune_models(cfg, which=todo) if todo else {}).items():
        models[w] = StartModel(path, {"from": "fine-tuned here", "base": cfg.model.name, "path": str(path),
                                      "weights_sha256": weights_sha256(path)}, path / "evaluations")
    return {w: models[w] for w in which}


def real_world_start(cfg: RunConfig) -> StartModel:
    """The real-world scenario unlearns an instruct model as it is: ``model.target``, else ``model.name``."""
    return _given(cfg, "model.target", cfg.model.target) if cfg.model.target else _given(cfg, "model.name", cfg.model.name)
