"""Unlearning on 2 CPU processes (torchrun, gloo) matches the single-process run's model."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def _unlearn(model_dir, out, nproc: int, tmp_path):
    args = ["unlearn", "--model", str(model_dir), "--output", str(out), "unlearn.method=ME+GD",
            "finetune.retain_rows=4", "unlearn.train.epochs=1", "unlearn.train.batch_size=10",
            "unlearn.train.bf16=false", f"output_dir={tmp_path / 'runs'}"]
    if nproc == 1:
        cmd = [sys.executable, "-m", "unlearnlm", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--master_port=29533", "-m", "unlearnlm", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_process_unlearning_matches_single_process(tiny_model_dir, tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    _unlearn(tiny_model_dir, single, 1, tmp_path)
    _unlearn(tiny_model_dir, multi, 2, tmp_path)
    a, b = load_file(single / "model.safetensors"), load_file(multi / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(a[k].shape == b[k].shape for k in a)
    assert any((a[k] != load_file(tiny_model_dir / "model.safetensors")[k]).any() for k in a)  # it trained
    AutoModelForCausalLM.from_pretrained(multi)  # loads as a plain HF folder


def test_an_fsdp_config_without_a_gpu_is_named_for_what_it_runs(monkeypatch, tmp_path, capsys):
    """accelerate enables FSDP for GPU-like devices only (accelerate/state.py): on a CPU machine an
    FSDP config runs as DDP, so the log says so instead of implying a sharded model."""
    import torch

    from unlearnlm.config.schema import TrainConfig
    from unlearnlm.training.base import training_arguments

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    training_arguments(TrainConfig(), tmp_path, 8)
    captured = capsys.readouterr()
    assert "accelerate runs it as DDP" in captured.err + captured.out
