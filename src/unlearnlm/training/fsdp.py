"""FSDP2 beyond what accelerate does: on CPU processes (gloo), and for the frozen reference model.

accelerate turns an FSDP config on only for GPU-like devices (``accelerate/state.py``): on a
machine without one, ``accelerate launch --config_file accelerate_configs/cpu_fsdp.yaml`` would
otherwise run as DDP, every process holding the whole model. PyTorch's FSDP2 (``fully_shard``)
itself runs on CPU with gloo, so after the Trainer builds its Accelerator we switch the shared
accelerate state to FSDP with the config's plugin; accelerate's own FSDP2 preparation, gathered
saves and sharded checkpoints then run unchanged, and the gathered model is saved here.

accelerate prepares a model for evaluation without sharding it, so a reference model (NPO, KL,
...) would be a whole copy on every process; ``shard_frozen`` shards it like the policy
(each decoder layer, then the root), on CPU and GPU alike. README, "Distributed training".
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import TrainerCallback

from unlearnlm.errors import ConfigError
from unlearnlm.utils import log


def cpu_fsdp_requested() -> bool:
    """An FSDP config (``ACCELERATE_USE_FSDP``) in several processes on a machine without a GPU."""
    return (os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
            and not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1)


def enable_cpu_fsdp(trainer) -> None:
    """Make ``trainer``'s accelerator shard with FSDP on CPU (a no-op unless requested)."""
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = trainer.accelerator.state
    if not cpu_fsdp_requested() or state.distributed_type != DistributedType.MULTI_CPU:
        return
    plugin = FullyShardedDataParallelPlugin()  # from the launcher's FSDP_* environment
    if plugin.fsdp_version != 2:
        raise ConfigError("fsdp_version: FSDP on CPU needs 2 in the accelerate config (FSDP1 shards on GPUs only)")
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin
    trainer.is_fsdp_enabled = True


def shard_frozen(model):
    """A frozen model sharded with FSDP2 (``fully_shard``) across the processes, as the policy is:
    each of its transformer blocks (``_no_split_modules``), then the whole model."""
    from torch.distributed.fsdp import fully_shard

    blocks = set(getattr(model, "_no_split_modules", None) or [])
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module)
    fully_shard(model)
    return model


def sharded_count(model) -> tuple[int, int]:
    """(parameter tensors that are DTensor shards, all parameter tensors)."""
    from torch.distributed.tensor import DTensor

    params = list(model.parameters())
    return sum(isinstance(p, DTensor) for p in params), len(params)


def is_cpu_fsdp(trainer) -> bool:
    """FSDP on CPU processes: only ``enable_cpu_fsdp`` turns it on there."""
    return trainer.is_fsdp_enabled and trainer.accelerator.device.type == "cpu"


def save_full_model(trainer, output_dir: str) -> None:
    """The whole model gathered from its shards (a collective: every rank calls it) and saved by
    the main process as a plain Hugging Face folder."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    model = trainer.accelerator.unwrap_model(trainer.model)
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if trainer.args.should_save:
        for name in _tied_aliases(model):  # gathered copies no longer share storage: keep one name
            state.pop(name, None)
        model.save_pretrained(output_dir, state_dict=state, safe_serialization=True)
    trainer.accelerator.wait_for_everyone()


def drop_fsdp_model_pickle(checkpoint: str) -> None:
    """Remove accelerate's pickled copy of the model (``pytorch_model_fsdp.bin``) from a checkpoint:
    ``save_full_model`` wrote the same weights as safetensors, which ``load_full_model`` reads."""
    from accelerate.utils.constants import FSDP_MODEL_NAME

    for f in Path(checkpoint).glob(f"{FSDP_MODEL_NAME}*.bin"):
        f.unlink()


def load_full_model(trainer, checkpoint: str) -> None:
    """Resume: every rank reads the checkpoint's whole model (``save_full_model``'s safetensors;
    under LoRA the adapter) and keeps its own shards. accelerate's FULL_STATE_DICT load, which broadcasts from rank 0,
    hangs on CPU processes (measured: rank 0 waits in the broadcast while rank 1 has gone on)."""
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    model = trainer.accelerator.unwrap_model(trainer.model)
    lora = hasattr(model, "peft_config")
    if lora:  # the checkpoint holds the adapter only; the frozen base is as loaded
        state = _adapter_state(model, load_file(os.path.join(checkpoint, "adapter_model.safetensors")))
    else:
        state = load_file(os.path.join(checkpoint, "model.safetensors"))
        for alias, name in _tied_aliases(model).items():
            state.setdefault(alias, state[name])
    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=not lora))
    trainer.accelerator.wait_for_everyone()


def _adapter_state(model, saved: dict) -> dict:
    """peft saves adapter weights without the adapter's name ("lora_A.weight"); the live
    parameters carry it ("lora_A.default.weight")."""
    live = {name.replace(f".{model.active_adapter}.", "."): name for name, _ in model.named_parameters()}
    missing = sorted(set(saved) - set(live))
    if missing:
        raise RuntimeError(f"adapter checkpoint keys not in the model: {missing[:3]}")
    return {live[key]: value for key, value in saved.items()}


def _tied_aliases(model) -> dict[str, str]:
    """{name: the earlier name of the same tensor} for parameters stored twice (a tied head)."""
    first, aliases = {}, {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            aliases[name] = first[id(p)]
        first.setdefault(id(p), name)
    return aliases


class ShardingReport(TrainerCallback):
    """A TrainerCallback that logs, once training starts, how many parameters FSDP sharded."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        sharded, total = sharded_count(model)
        log(f"[fsdp] {sharded} of {total} parameter tensors sharded over "
            f"{int(os.environ.get('WORLD_SIZE', '1'))} CPU processes")
