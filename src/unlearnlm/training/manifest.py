"""What every run directory records: versions, hardware, data checksums."""
from __future__ import annotations

import importlib.metadata as md
import platform
from pathlib import Path

from unlearnlm.io import sha256_file

PACKAGES = ("unlearnlm", "torch", "transformers", "accelerate", "peft", "sentence-transformers", "rouge-score", "scipy")


def environment_info() -> dict:
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = md.version(p)
        except md.PackageNotFoundError:
            versions[p] = None
    return {"python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "packages": versions}


def data_checksums(data_dir: Path) -> dict[str, str]:
    """sha256 of every data file (relative path -> digest)."""
    data_dir = Path(data_dir)
    return {str(p.relative_to(data_dir)): sha256_file(p)
            for p in sorted(data_dir.rglob("*")) if p.is_file() and p.suffix in (".json", ".jsonl")}
