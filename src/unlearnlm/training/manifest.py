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
            "processor": platform.processor() or platform.machine(), "cpu": cpu_model(),
            "threads": torch_threads(), "packages": versions}


def cpu_model() -> str | None:
    """The processor's model name (Linux), which with the thread count decides a CPU run's float sums."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        return None


def torch_threads() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()
