"""Reliability on the tiny model: SIGKILL + rerun gives the uninterrupted results, atomic
result files, NaN losses, reproducibility, and refusing unsafe inputs.

The interrupted runs are real ``python -m unlearnlm run`` processes killed with SIGKILL when
the filesystem shows they are inside a stage (an epoch checkpoint exists, a first evaluation
set is done); they are then rerun with the same command. No test-only hook in the package.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unlearnlm.cli import main
from unlearnlm.config import load_config
from unlearnlm.errors import ConfigError, ModelError

REPO = Path(__file__).resolve().parents[2]
METHOD = "GA+GD"  # has a forget and a retain part, no reference model: the cheapest full method
# Several epochs, so an epoch checkpoint exists well before the stage ends.
EPOCHS = ["finetune.train.epochs=3", "unlearn.train.epochs=3", f"methods=[{METHOD}]"]


def _overrides(model_dir: Path, nli_dir: Path, base: Path, *extra: str) -> list[str]:
    """conftest's ``tiny_run_overrides`` rooted at ``base`` (module-scoped runs need their own)."""
    return [
        f"model.name={model_dir}", f"model.cache_dir={base / 'cache'}",
        f"output_dir={base / 'runs'}", "run_name=tiny",
        "finetune.retain_rows=4", "finetune.train.epochs=1", "finetune.train.batch_size=16",
        "finetune.train.lr=1e-3", "finetune.train.bf16=false",
        "unlearn.train.epochs=1", "unlearn.train.batch_size=8", "unlearn.train.lr=1e-3", "unlearn.train.bf16=false",
        "eval.ds_size=3", "eval.max_new_tokens=6", "eval.batch_size=4", "eval.bf16=false",
        f"eval.nli={nli_dir}", *EPOCHS, *extra,
    ]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}


def _cli(overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "unlearnlm", "run", *overrides]


def _run_to_end(overrides: list[str], log: Path) -> str:
    with open(log, "w") as f:
        proc = subprocess.run(_cli(overrides), cwd=REPO, env=_env(), stdout=f, stderr=subprocess.STDOUT,
                              timeout=300)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    return text


def _run_and_kill(overrides: list[str], log: Path, marker) -> str:
    """Start the run, SIGKILL it as soon as ``marker()`` is true; the run must not end first."""
    with open(log, "w") as f:
        proc = subprocess.Popen(_cli(overrides), cwd=REPO, env=_env(), stdout=f, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        try:
            while not marker():
                assert proc.poll() is None, f"run ended (rc {proc.returncode}) before the kill point:\n" \
                                            + log.read_text()[-3000:]
                assert time.time() < deadline, "kill point never reached"
                time.sleep(0.005)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return log.read_text()


def _epoch_checkpoint(ckpt_parent: Path, pattern: str):
    """Marker: a complete epoch checkpoint (trainer_state.json is written last) exists."""
    return lambda: any(ckpt_parent.glob(f"{pattern}/checkpoint-*/trainer_state.json"))


def _close(a, b, where: str = "") -> None:
    """Equal JSON values, floats within 1e-6 (relative for large magnitudes)."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), (where, a, b)
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6), (where, a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, a, b)
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def _assert_same_results(run_dir: Path, ref_dir: Path) -> None:
    """Same results.json rows and the same per-example records (generations included)."""
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    ref_rows = json.loads((ref_dir / "results.json").read_text())["rows"]
    assert [r["label"] for r in rows] == [r["label"] for r in ref_rows] == ["target", METHOD]
    for row, ref in zip(rows, ref_rows):
        assert row["status"] == ref["status"] == "ok"
        _close(row, ref, row["label"])
        ref_files = sorted(p.name for p in (ref_dir / ref["eval_dir"]).glob("*.jsonl"))
        assert ref_files == sorted(p.name for p in (run_dir / row["eval_dir"]).glob("*.jsonl"))
        assert len(ref_files) == 4
        for name in ref_files:
            got = [json.loads(l) for l in (run_dir / row["eval_dir"] / name).read_text().splitlines()]
            want = [json.loads(l) for l in (ref_dir / ref["eval_dir"] / name).read_text().splitlines()]
            assert [r["generation"] for r in got] == [r["generation"] for r in want], (row["label"], name)
            _close(got, want, f"{row['label']}/{name}")


# --------------------------------------------------------------------------- reference run
@pytest.fixture(scope="module")
def reference(tiny_model_dir, tiny_nli_dir, tmp_path_factory) -> Path:
    """An uninterrupted CLI run (its own cache: nothing is shared with the other runs)."""
    base = tmp_path_factory.mktemp("reference")
    _run_to_end(_overrides(tiny_model_dir, tiny_nli_dir, base), base / "log.txt")
    return base / "runs" / "tiny"


# --------------------------------------------------------------------------- 1. interruption
def test_sigkill_in_finetune_unlearn_and_eval_then_rerun_gives_reference_results(
        reference, tiny_model_dir, tiny_nli_dir, tmp_path):
    overrides = _overrides(tiny_model_dir, tiny_nli_dir, tmp_path)
    run_dir = tmp_path / "runs" / "tiny"
    finetuned = tmp_path / "cache" / "finetuned"

    # 1. killed while fine-tuning the target (its first epoch checkpoint exists)
    _run_and_kill(overrides, tmp_path / "log1.txt", _epoch_checkpoint(finetuned, "*/target.checkpoints"))
    assert not any(finetuned.glob("*/target/unlearnlm_manifest.json"))
    assert not (run_dir / "results.json").exists()

    # 2. the same command resumes fine-tuning from that checkpoint; killed while unlearning
    models = run_dir / "models"
    log2 = _run_and_kill(overrides, tmp_path / "log2.txt", _epoch_checkpoint(models, f"{METHOD}.checkpoints"))
    assert "[finetune] target" in log2 and "(resuming from " in log2 and "target.checkpoints/checkpoint-" in log2
    assert not (models / METHOD / "unlearnlm_manifest.json").is_file()

    # 3. resumes unlearning from its epoch checkpoint; killed after the first evaluation set
    eval_dir = run_dir / "eval" / METHOD
    log3 = _run_and_kill(overrides, tmp_path / "log3.txt",
                         lambda: any(p.name != "summary.json" for p in eval_dir.glob("*.summary.json")))
    assert f"[unlearn] {METHOD}" in log3 and f", resuming from " in log3 and f"{METHOD}.checkpoints/checkpoint-" in log3
    assert "[finetune] target: cached" in log3
    assert not (eval_dir / "summary.json").exists()
    done_before_kill = sorted(p.name for p in eval_dir.glob("*.summary.json"))

    # 4. runs to the end, reusing the evaluated sets; results equal the uninterrupted run's
    log4 = _run_to_end(overrides, tmp_path / "log4.txt")
    assert f"[unlearn] {METHOD}: cached" in log4
    for name in done_before_kill:
        assert f"eval {name.removesuffix('.summary.json')}: loaded from {eval_dir}" in log4
    assert not list(models.glob("*.checkpoints")) and not list(finetuned.glob("*/*.checkpoints"))
    _assert_same_results(run_dir, reference)
