"""State that lives across optimiser steps (RMU's control vector, PDU's dual variable): one
safetensors file in every checkpoint, written before the Trainer's trainer_state.json (which
marks a checkpoint complete), and in the finished model folder. docs/method.md, "Resume"."""
from __future__ import annotations

import os
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor

from unlearnlm.training.layout import METHOD_STATE


def save_method_state(folder: Path, state: dict[str, Tensor]) -> None:
    """Write ``state`` atomically into ``folder`` (created if needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (METHOD_STATE + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, folder / METHOD_STATE)


def load_method_state(folder: Path, expected: set[str]) -> dict[str, Tensor]:
    """The state saved in ``folder``; a clear error when it is missing or lacks a key."""
    path = Path(folder) / METHOD_STATE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the checkpoint has no method state to resume from; "
                                f"delete {Path(folder).parent} to restart the job")
    state = load_file(str(path))
    missing = expected - set(state)
    if missing:
        raise KeyError(f"{path}: method state lacks {sorted(missing)}")
    return state
