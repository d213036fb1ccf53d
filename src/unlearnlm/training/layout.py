"""Where a trained model's files live: the one home of the model-folder layout.

    <out>/                              a plain Hugging Face folder (safetensors, tokenizer)
    <out>/unlearnlm_manifest.json       written last: its presence marks the folder finished
    <out>/unlearnlm_method_state.safetensors   state that lived across steps (RMU's c, PDU's lambda)
    <out>/adapter/                      the LoRA adapter (when trained with LoRA)
    <out>/epochs/epoch-N/               a model per epoch (save_every_epoch)
    <out>.checkpoints/checkpoint-N/     resumable Trainer checkpoints, removed once finished
    <out>.epochs-tmp/epochs/epoch-N/    per-epoch models while training
    <out>.tmp/                          the final folder while it is written (then renamed)
    <out>.logs/                         tracking logs (train.report_to=tensorboard)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MANIFEST = "unlearnlm_manifest.json"
METHOD_STATE = "unlearnlm_method_state.safetensors"


@dataclass(frozen=True)
class ModelFolder:
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    def _sibling(self, suffix: str) -> Path:
        return self.path.with_name(self.path.name + suffix)

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    @property
    def is_done(self) -> bool:
        return self.manifest.is_file()

    @property
    def method_state(self) -> Path:
        return self.path / METHOD_STATE

    @property
    def adapter(self) -> Path:
        return self.path / "adapter"

    @property
    def checkpoints(self) -> Path:
        return self._sibling(".checkpoints")

    @property
    def epochs_tmp(self) -> Path:
        return self._sibling(".epochs-tmp")

    @property
    def tmp(self) -> Path:
        return self._sibling(".tmp")

    @property
    def logs(self) -> Path:
        return self._sibling(".logs")

    def epoch_dir(self, epoch: int, while_training: bool = False) -> Path:
        root = self.epochs_tmp if while_training else self.path
        return root / "epochs" / f"epoch-{epoch}"

    def epoch_dirs(self) -> list[tuple[int, Path]]:
        """(epoch, folder) of the saved per-epoch models, in epoch order."""
        root = self.path / "epochs"
        if not root.is_dir():
            return []
        found = [(int(p.name.split("-")[-1]), p) for p in root.iterdir() if p.name.split("-")[-1].isdigit()]
        return sorted(found)
