"""What every run directory records: versions and hardware (data checksums: ``data/bundle.py``)."""
from __future__ import annotations

import importlib.metadata as md
import platform

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
