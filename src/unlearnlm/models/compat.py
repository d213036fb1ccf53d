"""Saved model folders that transformers 4.x stacks read correctly.

transformers 5.x writes the RoPE settings only as ``rope_parameters`` and names its tokenizer
class ``TokenizersBackend``. transformers 4.x (OpenUnlearning pins 4.45) reads ``rope_theta``
and silently falls back to 10000 without it, and does not know that tokenizer class. So
every folder this toolkit saves also carries the 4.x keys, with the same values:

    add_legacy_keys(folder)   # config.json: rope_theta (+ rope_scaling, Gemma-3's
                              # rope_local_base_freq); tokenizer_config.json: a 4.x class
"""
from __future__ import annotations

import json
import os
from pathlib import Path

LEGACY_TOKENIZER_CLASS = "PreTrainedTokenizerFast"  # what 5.x's TokenizersBackend was called in 4.x


def _legacy_rope(params: dict) -> dict:
    """4.x keys for a 5.x ``rope_parameters`` (flat, or per attention type as in Gemma-3)."""
    if "rope_theta" in params:
        out = {"rope_theta": params["rope_theta"]}
        if params.get("rope_type", "default") != "default":
            out["rope_scaling"] = {k: v for k, v in params.items() if k != "rope_theta"}
        return out
    full, local = params.get("full_attention"), params.get("sliding_attention")
    out = {}
    if isinstance(full, dict) and "rope_theta" in full:
        out = _legacy_rope(full)
    if isinstance(local, dict) and "rope_theta" in local:
        out["rope_local_base_freq"] = local["rope_theta"]
    return out


def _update_json(path: Path, update) -> None:
    if not path.is_file():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    new = update(dict(data))
    if new != data:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(new, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)


def add_legacy_keys(folder: Path) -> None:
    """Add the transformers 4.x keys beside the 5.x ones in ``folder`` (existing keys kept)."""
    folder = Path(folder)

    def config(c: dict) -> dict:
        for target in [c] + [c[k] for k in ("text_config",) if isinstance(c.get(k), dict)]:
            params = target.get("rope_parameters")
            if isinstance(params, dict):
                for key, value in _legacy_rope(params).items():
                    target.setdefault(key, value)
        return c

    def tokenizer(t: dict) -> dict:
        if t.get("tokenizer_class") == "TokenizersBackend":
            t["tokenizer_class"] = LEGACY_TOKENIZER_CLASS
        return t

    _update_json(folder / "config.json", config)
    _update_json(folder / "tokenizer_config.json", tokenizer)
