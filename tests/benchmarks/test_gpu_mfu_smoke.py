"""The GPU benchmark's code path, run on the CPU with a tiny model (no GPU needed): what a lent
GPU would run (``benchmarks/gpu_mfu.py``) must not rot between sessions that have one."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_mfu_runs_its_training_step_with_the_chunked_loss_on_a_tiny_cpu_model():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_mfu.py"), "--tiny", "--threads", "1",
                           "--chunk", "16"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 steps in" in done.stdout
    assert "SUMMARY gpu_mfu: tiny CPU smoke test ran" in done.stdout
