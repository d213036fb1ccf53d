"""Resolve a model spec (offline alias, local folder, hub id) and load model + tokenizer."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from unlearnlm.errors import ModelError
from unlearnlm.models.offline import OFFLINE_MODELS, prepare_offline_model

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")


def resolve_model(spec: str, cache_dir: str | os.PathLike | None = None) -> str:
    """A loadable path or hub id. Offline aliases are converted on first use."""
    if spec in OFFLINE_MODELS:
        return str(prepare_offline_model(spec, cache_dir))
    path = Path(spec).expanduser()
    looks_local = path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1
    if looks_local:
        if not path.is_dir():
            raise ModelError(f"model {spec!r}: no such directory")
        if not (path / "config.json").is_file():
            raise ModelError(f"model {spec!r}: holds no model (no config.json)")
        if not any((path / f).is_file() for f in WEIGHT_FILES):
            raise ModelError(f"model {spec!r}: no safetensors weights (pickled .bin weights are not loaded)")
        return str(path)
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelError(
            f"model {spec!r} is neither an offline alias ({', '.join(OFFLINE_MODELS)}) nor a local folder, "
            "and HF_HUB_OFFLINE=1 forbids the hub"
        )
    return spec  # a hub id, for users with a hub


HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]  # never pickled .bin weights


def local_model(spec: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """A local folder for ``spec``: an offline alias (converted once), a folder, or a hub id
    downloaded once into the Hugging Face cache (safetensors and tokenizer files only)."""
    resolved = resolve_model(spec, cache_dir)
    if Path(resolved).is_dir():
        return Path(resolved)
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(resolved, allow_patterns=HUB_PATTERNS))
    except Exception as e:  # no network, gated repo, unknown id: one line, whichever it is
        raise ModelError(f"model {spec!r}: cannot download from the hub ({str(e).strip().splitlines()[0]})") from None
    return Path(resolve_model(str(folder)))


def bf16_supported() -> bool:
    """Whether bf16 autocast on this CPU is fast (native bf16 or AMX instructions)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(setting: str | bool) -> bool:
    s = str(setting).lower()
    if s == "auto":
        return bf16_supported()
    return s == "true"


def eval_precision(setting: str | bool) -> str:
    """What ``eval.bf16`` means on this machine: "bf16 weights", "bf16 autocast" or "fp32"
    (``auto`` resolves by processor, so one setting evaluates differently on two hosts)."""
    if str(setting).lower() == "weights":
        return "bf16 weights"
    return "bf16 autocast" if use_bf16(setting) else "fp32"


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise ModelError(f"model {path!r}: cannot load tokenizer ({str(e).splitlines()[0]})") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str, trust_remote_code: bool = False, dtype: torch.dtype = torch.float32):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=True
        )
    except (OSError, ValueError) as e:
        raise ModelError(f"model {path!r}: cannot load ({str(e).splitlines()[0]})") from None
