"""Reliability on the tiny model: SIGKILL + rerun gives the uninterrupted results, atomic
result files, NaN losses, reproducibility, and refusing unsafe inputs.

The interrupted runs are separate processes running the CLI's ``run`` (``unlearnlm.cli.main``,
what ``python -m unlearnlm run`` calls), killed with SIGKILL as soon as the filesystem shows
them inside a stage (a complete epoch checkpoint, a first finished evaluation set), then
started again with the same arguments. No test-only hook in the package.

Budget: about a minute on two busy CPU cores. The uninterrupted reference and the second
reproducibility run run in-process (one torch thread, like the OMP_NUM_THREADS=1 children).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata as md
import itertools
import json
import math
import os
import platform
import re
import shutil
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from unlearnlm.data import bundle

from unlearnlm.cli import main
from unlearnlm.config import load_config
from unlearnlm.config.load import config_to_dict
from unlearnlm.config.schema import RunConfig
from unlearnlm.errors import ConfigError, ModelError, NumericalError
from unlearnlm.io import atomic_path, read_json, write_json

REPO = Path(__file__).resolve().parents[2]
METHOD = "GA+GD"  # has a forget and a retain part, no reference model: the cheapest full method
# Several epochs, so an epoch checkpoint exists well before the stage ends.
EPOCHS = ["finetune.train.epochs=3", "unlearn.train.epochs=3", f"methods=[{METHOD}]"]


def _overrides(make_tiny_overrides, base: Path, *extra: str) -> list[str]:
    """The tiny overrides with 3 epochs, one method and Forget Quality (a retain model too)."""
    return make_tiny_overrides(base, *EPOCHS, "eval.forget_quality=true", *extra)


# The runs that are killed are separate processes running ``unlearnlm.cli.main(argv)``, exactly
# what ``python -m unlearnlm run ARGS`` runs. They are forked from a multiprocessing fork server
# that has imported the package once: a fresh ``python -m unlearnlm`` spends ~6 CPU seconds on
# imports alone, four times per interrupted run. Each run is still its own process, killed
# with SIGKILL; nothing but imported modules is shared with the server (which runs nothing).
PRELOAD = ["unlearnlm.cli", "unlearnlm.pipeline.scenarios", "unlearnlm.evaluation.judges.embedder",
           "unlearnlm.evaluation.judges.factory", "unlearnlm.reports.build", "unlearnlm.reports.figures",
           "unlearnlm.reports.html", "unlearnlm.reports.table", "sentence_transformers",
           "rouge_score.rouge_scorer"]
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def processes():
    import multiprocessing
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    with pytest.MonkeyPatch.context() as mp:  # the server (and so every run) starts with this environment
        for key, value in ENV.items():
            mp.setenv(key, value)
        mp.chdir(REPO)
        ctx.set_forkserver_preload(PRELOAD)
        forkserver.ensure_running()
    return ctx


def _cli_process(argv: list[str], log: str) -> None:
    """Child process: ``unlearnlm <argv>`` with stdout and stderr into ``log``."""
    import torch

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.update(ENV)
    torch.set_num_threads(1)
    from unlearnlm.cli import main as cli_main

    code = cli_main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _start(processes, overrides: list[str], log: Path, command: str = "run"):
    proc = processes.Process(target=_cli_process, args=([command, *overrides], str(log)))
    proc.start()
    return proc


def _run_to_end(processes, overrides: list[str], log: Path) -> str:
    proc = _start(processes, overrides, log)
    proc.join(300)
    text = log.read_text()
    assert proc.exitcode == 0, text[-3000:]
    return text


def _run_and_kill(processes, overrides: list[str], log: Path, marker, command: str = "run") -> str:
    """Start the run, SIGKILL it as soon as ``marker()`` is true; the run must not end first."""
    proc = _start(processes, overrides, log, command)
    deadline = time.time() + 300
    try:
        while not marker():
            assert proc.is_alive(), f"run ended (exit {proc.exitcode}) before the kill point:\n" \
                                    + log.read_text()[-3000:]
            assert time.time() < deadline, "kill point never reached"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
    assert proc.exitcode == -signal.SIGKILL
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
        assert len(ref_files) == 5  # forget, retain, real_authors, world_facts, holdout
        for name in ref_files:
            got = [json.loads(l) for l in (run_dir / row["eval_dir"] / name).read_text().splitlines()]
            want = [json.loads(l) for l in (ref_dir / ref["eval_dir"] / name).read_text().splitlines()]
            assert [r.get("generation") for r in got] == [r.get("generation") for r in want], (row["label"], name)
            _close(got, want, f"{row['label']}/{name}")


@contextlib.contextmanager
def _one_thread():
    """In-process runs use one thread, like the OMP_NUM_THREADS=1 child processes."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _run_in_process(overrides: list[str]) -> None:
    with _one_thread():
        assert main(["run", *overrides]) == 0


# --------------------------------------------------------------------------- reference run
@pytest.fixture(scope="module")
def reference(make_tiny_overrides, tmp_path_factory) -> SimpleNamespace:
    """An uninterrupted run with its own cache (nothing is shared with the other runs). It runs
    in-process (a CLI process costs seconds of imports) and records every ``from_pretrained``."""
    import transformers

    base = tmp_path_factory.mktemp("reference")
    calls: list[tuple[str, str, object]] = []
    with pytest.MonkeyPatch.context() as mp:
        for cls in (transformers.AutoModelForCausalLM, transformers.AutoTokenizer,
                    transformers.AutoModelForSequenceClassification):
            def recorder(*args, _original=cls.from_pretrained, _cls=cls.__name__, **kwargs):
                calls.append((_cls, str(args[0]), kwargs.get("trust_remote_code", "not passed")))
                return _original(*args, **kwargs)

            mp.setattr(cls, "from_pretrained", recorder)
        overrides = _overrides(make_tiny_overrides, base)
        _run_in_process(overrides)
    return SimpleNamespace(base=base, dir=base / "runs" / "tiny", overrides=overrides, calls=calls)


# --------------------------------------------------------------------------- 1. interruption
def test_sigkill_in_finetune_unlearn_and_eval_then_rerun_gives_reference_results(
        reference, processes, make_tiny_overrides, tmp_path):
    overrides = _overrides(make_tiny_overrides, tmp_path)
    run_dir = tmp_path / "runs" / "tiny"
    finetuned = tmp_path / "cache" / "finetuned"

    # 1. killed while fine-tuning the target (its first epoch checkpoint exists)
    _run_and_kill(processes, overrides, tmp_path / "log1.txt", _epoch_checkpoint(finetuned, "*/target.checkpoints"))
    assert not any(finetuned.glob("*/target/unlearnlm_manifest.json"))
    assert not (run_dir / "results.json").exists()

    # 2. the same command resumes fine-tuning from that checkpoint; killed while unlearning
    models = run_dir / "models"
    log2 = _run_and_kill(processes, overrides, tmp_path / "log2.txt", _epoch_checkpoint(models, f"{METHOD}.checkpoints"))
    assert re.search(r"\[finetune\] target: .*, resuming from \S*/target\.checkpoints/checkpoint-\d+$", log2, re.M), log2
    assert not (models / METHOD / "unlearnlm_manifest.json").is_file()

    # 3. resumes unlearning from its epoch checkpoint; killed after the first evaluation set
    eval_dir = run_dir / "eval" / METHOD
    log3 = _run_and_kill(processes, overrides, tmp_path / "log3.txt",
                         lambda: any(p.name != "summary.json" for p in eval_dir.glob("*.summary.json")))
    assert re.search(rf"\[unlearn\] {re.escape(METHOD)}: .*, resuming from \S*/{re.escape(METHOD)}\.checkpoints/"
                     r"checkpoint-\d+$", log3, re.M), log3
    assert "[finetune] target: cached" in log3
    assert not (eval_dir / "summary.json").exists()
    done_before_kill = sorted(p.name for p in eval_dir.glob("*.summary.json"))

    # 4. runs to the end, reusing the evaluated sets; results equal the uninterrupted run's
    log4 = _run_to_end(processes, overrides, tmp_path / "log4.txt")
    assert f"[unlearn] {METHOD}: cached" in log4
    for name in done_before_kill:
        assert f"eval {name.removesuffix('.summary.json')}: loaded from {eval_dir}" in log4
    assert not list(models.glob("*.checkpoints")) and not list(finetuned.glob("*/*.checkpoints"))
    _assert_same_results(run_dir, reference.dir)


def test_sigkill_in_pdu_unlearning_resumes_the_same_dual_variable_trajectory(
        processes, make_tiny_overrides, tmp_path):
    """PDU's lambda lives across steps: killed after its first epoch checkpoint and resumed, the
    run logs the same lambda at every step as an uninterrupted run, and ends with the same one."""
    from safetensors.torch import load_file

    from unlearnlm.training.layout import METHOD_STATE

    pdu = ["unlearn.method=PDU", "unlearn.train.epochs=3", "unlearn.pdu_eps=0", "unlearn.pdu_dual_warmup_epochs=0",
           "unlearn.pdu_lambda0=1", "unlearn.pdu_eta=0.5"]
    overrides = make_tiny_overrides(tmp_path, *pdu)
    with _one_thread():
        assert main(["unlearn", *overrides, "--output", str(tmp_path / "whole")]) == 0
    out = tmp_path / "killed"
    _run_and_kill(processes, [*overrides, "--output", str(out)], tmp_path / "log1.txt",
                  _epoch_checkpoint(tmp_path, "killed.checkpoints"), command="unlearn")
    with _one_thread():
        assert main(["unlearn", *overrides, "--output", str(out)]) == 0

    def lambdas(folder: Path) -> list[float]:
        return [h["dual_lambda"] for h in read_json(folder / "unlearnlm_manifest.json")["log_history"]
                if "dual_lambda" in h]

    whole = lambdas(tmp_path / "whole")
    assert len(whole) == 3 * 5 and whole == sorted(whole) and whole[-1] > whole[0]  # eps 0: lambda rises
    assert lambdas(out) == pytest.approx(whole, abs=1e-6)
    final = [load_file(f / METHOD_STATE)["pdu_lambda"].item() for f in (tmp_path / "whole", out)]
    assert final[0] == pytest.approx(final[1], rel=1e-9)


# --------------------------------------------------------------------------- 2. atomic writes
def test_atomic_write_never_leaves_a_partial_file(tmp_path):
    path = tmp_path / "forget.summary.json"
    write_json(path, {"n": 3})
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text('{"n": 4, "means": {"rou')  # killed mid-write
            raise RuntimeError("interrupted")
    assert read_json(path) == {"n": 3}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # the temp file is gone too


def test_half_written_set_results_are_recomputed_not_read(reference, capsys, tmp_path):
    """A set counts as done only through a complete ``<set>.summary.json``: one cut short, an
    empty one, or only a leftover temp file (a kill before the rename) is recomputed."""
    from unlearnlm.data import tofu
    from unlearnlm.data.loading import resolve_data_dir
    from unlearnlm.data.holdout import holdout_rows
    from unlearnlm.evaluation.evaluate import evaluate_model
    from unlearnlm.evaluation.judges.factory import exclude_questions_for, load_judges

    ref_eval = reference.dir / "eval" / METHOD
    out = tmp_path / "eval"
    shutil.copytree(ref_eval, out)
    (out / "summary.json").unlink()
    text = (out / "forget.summary.json").read_text()
    (out / "forget.summary.json").write_text(text[: len(text) // 2])  # cut short
    (out / "real_authors.summary.json").write_text("")  # zero-length (crash before data hit the disk)
    (out / "retain.summary.json").rename(out / ".retain.summary.json.x1y2z3.tmp")  # killed before rename
    (out / ".retain.jsonl.a1b2c3.tmp").write_text('{"question": "half a rec')
    (out / "retain.jsonl").unlink()

    cfg = load_config("demo", reference.overrides)
    sets = tofu.eval_sets(resolve_data_dir(cfg.data.data_dir), cfg.data.split, cfg.data.tasks, cfg.eval.ds_size)
    sets["holdout"] = holdout_rows(cfg)[0][: cfg.eval.ds_size]  # as the run evaluated it
    judges = load_judges(cfg, exclude_questions_for(cfg), progress=False)
    capsys.readouterr()
    with _one_thread():
        summary = evaluate_model(reference.dir / "models" / METHOD, cfg, sets, "tofu", out, judges, progress=False)
    err = capsys.readouterr().err
    assert f"{out / 'forget.summary.json'}: unreadable; recomputing" in err
    assert f"{out / 'real_authors.summary.json'}: unreadable; recomputing" in err
    assert f"eval world_facts: loaded from" in err
    for name in ("forget", "retain", "real_authors"):
        assert f"eval {name}: loaded from" not in err
        assert f"eval {name}: 3 examples, " in err
    ref_summary = read_json(ref_eval / "summary.json")
    _close(summary["sets"], ref_summary["sets"], "sets")
    _close(summary["aggregates"], ref_summary["aggregates"], "aggregates")
    for name in sets:
        _close(read_json(out / f"{name}.summary.json")["means"], read_json(ref_eval / f"{name}.summary.json")["means"],
               name)
        got = (out / f"{name}.jsonl").read_text().splitlines()
        assert [json.loads(l).get("generation") for l in got] == \
            [json.loads(l).get("generation") for l in (ref_eval / f"{name}.jsonl").read_text().splitlines()]


def test_last_checkpoint_skips_a_checkpoint_cut_short(tmp_path):
    from unlearnlm.training.base import last_checkpoint

    for step in (5, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (tmp_path / "checkpoint-15").mkdir()  # killed while writing trainer_state.json (not atomic in HF)
    (tmp_path / "checkpoint-15" / "trainer_state.json").write_text('{"global_step": 15, "log_hi')
    (tmp_path / "checkpoint-20").mkdir()  # killed while writing the weights
    (tmp_path / "checkpoint-20" / "model.safetensors").write_bytes(b"\0" * 10)
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert last_checkpoint(tmp_path / "missing") is None


# --------------------------------------------------------------------------- 3. numerical failure
def _finite_weights(checkpoint: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    tensors = load_file(checkpoint / "model.safetensors")
    return bool(tensors) and all(bool(torch.isfinite(t).all()) for t in tensors.values())


STEPS_PER_EPOCH = 5  # 40 forget QA / batch 8


def test_diverging_unlearning_fails_its_row_and_keeps_the_last_good_checkpoint(
        reference, make_tiny_overrides, capsys, tmp_path):
    """GA at lr 30 diverges in its second epoch: the row is recorded as failed with the step,
    the epoch-1 checkpoint stays (and is finite), no model or evaluation is produced."""
    shutil.copytree(reference.base / "cache", tmp_path / "cache")  # fine-tuned models: only unlearning runs
    _run_in_process(_overrides(make_tiny_overrides, tmp_path, "unlearn.train.lr=30",
                               "unlearn.train.epochs=4"))
    run_dir = tmp_path / "runs" / "tiny"
    rows = {r["label"]: r for r in read_json(run_dir / "results.json")["rows"]}
    assert rows["target"]["status"] == "ok"
    failed = rows[METHOD]
    assert failed["status"] == "failed" and failed["aggregates"] == {} and failed["sets"] == {}
    assert failed["method"] == METHOD and failed["lr"] == 30
    match = re.search(r"non-finite (loss|gradient norm) \((nan|inf|-inf)\) at optimisation step (\d+)",
                      failed["error"])
    assert match, failed["error"]
    step = int(match.group(3))
    assert step > STEPS_PER_EPOCH, "diverged in the first epoch: no checkpoint to keep"
    ckpt_dir = run_dir / "models" / f"{METHOD}.checkpoints"
    assert str(ckpt_dir) in failed["error"]
    from unlearnlm.training.base import last_checkpoint

    last = Path(last_checkpoint(ckpt_dir))
    assert int(last.name.split("-")[1]) == (step - 1) // STEPS_PER_EPOCH * STEPS_PER_EPOCH
    assert _finite_weights(last), "the kept checkpoint holds NaN/inf weights"
    assert not (run_dir / "models" / METHOD).exists() and not (run_dir / "eval" / METHOD).exists()
    captured = capsys.readouterr()
    assert f"[{METHOD}] FAILED: non-finite" in captured.err
    assert (run_dir / "report.html").is_file()


@pytest.mark.parametrize("kind, step, epochs", [
    ("loss", 7, 2),  # NaN loss in the second epoch
    # finite loss, NaN gradients on the last step of epoch 2: that update must not reach the
    # epoch-2 checkpoint (which would then be kept as "the last good checkpoint")
    ("gradient", 10, 3),
])
def test_non_finite_loss_or_gradient_stops_before_the_update(kind, step, epochs, reference, monkeypatch, tmp_path):
    import torch

    import unlearnlm.methods.settings as settings
    import unlearnlm.training.unlearn as unlearn

    real_get_method = settings.get_method
    calls = itertools.count(1)

    def poisoned(name):
        method = real_get_method(name)
        fn = method.forget.fn

        def forget(ctx, cfg):
            value = fn(ctx, cfg)
            if next(calls) != step:
                return value
            if kind == "loss":
                return value * float("nan")
            return value + torch.sqrt(value * 0.0)  # value unchanged; d/dvalue = inf * 0 = nan

        return dataclasses.replace(method, forget=dataclasses.replace(method.forget, fn=forget))

    monkeypatch.setattr(settings, "get_method", poisoned)  # where unlearn_model resolves its method
    cfg = load_config("demo", reference.overrides + [f"unlearn.train.epochs={epochs}"])
    (target,) = (reference.base / "cache" / "finetuned").glob("*/target")
    out = tmp_path / "unlearned"
    what = "loss" if kind == "loss" else "gradient norm"
    with _one_thread(), pytest.raises(NumericalError, match=rf"non-finite {what} \(nan\) at optimisation step {step};"):
        unlearn.unlearn_model(cfg, METHOD, target, out)
    ckpt_dir = tmp_path / "unlearned.checkpoints"
    good = (step - 1) // STEPS_PER_EPOCH * STEPS_PER_EPOCH
    assert sorted(p.name for p in ckpt_dir.iterdir()) == [f"checkpoint-{good}", "job.json"]  # and its job
    assert _finite_weights(ckpt_dir / f"checkpoint-{good}")
    assert not out.exists()


# --------------------------------------------------------------------------- 4. reproducibility
def test_same_seed_and_config_give_identical_results(reference, make_tiny_overrides, tmp_path):
    overrides = _overrides(make_tiny_overrides, tmp_path)
    _run_in_process(overrides)
    run_dir = tmp_path / "runs" / "tiny"
    assert read_json(run_dir / "results.json")["rows"] == read_json(reference.dir / "results.json")["rows"]
    _assert_same_results(run_dir, reference.dir)
    assert read_json(run_dir / "manifest.json")["data_sha256"] == read_json(reference.dir / "manifest.json")["data_sha256"]


def test_run_directory_records_config_seed_versions_and_data_checksums(reference):
    run_dir = reference.dir
    assert read_json(run_dir / "config.json") == config_to_dict(load_config("demo", reference.overrides))
    manifest = read_json(run_dir / "manifest.json")
    assert {"seed", "environment", "data_dir", "data_sha256"} <= manifest.keys()
    assert manifest["seed"] == 0 == read_json(run_dir / "config.json")["unlearn"]["train"]["seed"]
    env = manifest["environment"]
    assert env["python"] == platform.python_version()
    for package in ("torch", "transformers", "accelerate", "unlearnlm"):
        assert env["packages"][package] == md.version(package)
    data_dir = Path(manifest["data_dir"])
    checksums = manifest["data_sha256"]
    assert "tofu/forget01.json" in checksums and "idontknow.jsonl" in checksums
    for rel in ("tofu/forget01.json", "idontknow.jsonl"):
        assert checksums[rel] == hashlib.sha256(bundle.read_bytes(bundle.find_data_file(data_dir / rel))).hexdigest()
    # every model folder says how it was made
    for manifest_file in [*(reference.base / "cache" / "finetuned").glob("*/*/unlearnlm_manifest.json"),
                          run_dir / "models" / METHOD / "unlearnlm_manifest.json"]:
        model_manifest = read_json(manifest_file)
        assert model_manifest["seed"] == 0 and model_manifest["environment"]["packages"]["torch"]


# --------------------------------------------------------------------------- 5. safety
def _no_work(monkeypatch):
    import unlearnlm.pipeline.scenarios as scenarios

    def started(*args, **kwargs):
        raise AssertionError("work started before the input was refused")

    import unlearnlm.pipeline.start as start

    for name in ("load_judges", "evaluate_model", "unlearn_model"):
        monkeypatch.setattr(scenarios, name, started)
    monkeypatch.setattr(start, "finetune_models", started)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("name", ["../escape", "..", ".", "a/../../escape", "ABSOLUTE", "sub/dir"])
def test_run_name_that_leaves_output_dir_is_refused(name, tiny_run_overrides, monkeypatch, capsys, tmp_path):
    _no_work(monkeypatch)
    name = str(tmp_path / "abs-escape") if name == "ABSOLUTE" else name
    before = _tree(tmp_path)
    overrides = [o for o in tiny_run_overrides if not o.startswith("run_name=")] + [f"run_name={name}"]
    assert main(["run", *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: run_name:") and "Traceback" not in err
    assert _tree(tmp_path) == before  # nothing written, not even inside output_dir
    with pytest.raises(ConfigError):
        from unlearnlm.pipeline.rundir import open_run_dir

        open_run_dir(load_config("demo", overrides))


@pytest.fixture(scope="module")
def pickled_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model saved the old way: config, tokenizer and a pickled pytorch_model.bin only."""
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("pickled")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.save_pretrained(out)
    torch.save(model.state_dict(), out / "pytorch_model.bin")
    for f in tiny_model_dir.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")) or f.name.endswith(".jinja"):
            shutil.copy(f, out / f.name)
    assert (out / "pytorch_model.bin").is_file() and not list(out.glob("*.safetensors"))
    return out


def test_model_folder_with_only_pickled_weights_is_refused(pickled_model_dir, tiny_run_overrides, monkeypatch,
                                                           capsys, tmp_path):
    import torch

    from unlearnlm.models.loading import load_model, resolve_model
    from unlearnlm.pipeline import scenarios

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load called on a model folder")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(ModelError, match="no safetensors weights"):
        resolve_model(str(pickled_model_dir))
    with pytest.raises(ModelError, match="cannot load"):  # even when resolve_model is bypassed
        load_model(str(pickled_model_dir))
    # the whole run: judges stubbed (they load nothing from the model), refused before any training
    monkeypatch.setattr(scenarios, "load_judges", lambda *a, **k: SimpleNamespace(describe=lambda: {}))
    overrides = [o for o in tiny_run_overrides if not o.startswith("model.name=")] + \
        [f"model.name={pickled_model_dir}"]
    assert main(["run", *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: model ") and "pickled .bin weights are not loaded" in err[-1]
    assert not (tmp_path / "cache" / "finetuned").exists()  # refused before any fine-tuning


def test_trust_remote_code_defaults_to_false_and_reaches_from_pretrained(reference):
    assert RunConfig().model.trust_remote_code is False
    assert load_config("demo").model.trust_remote_code is False
    assert read_json(reference.dir / "config.json")["model"]["trust_remote_code"] is False
    causal = [c for c in reference.calls if c[0] == "AutoModelForCausalLM"]
    # fine-tune target and retain, evaluate retain, target and the unlearned model, unlearn
    assert len(causal) >= 6, reference.calls
    assert sum(c[0] == "AutoTokenizer" for c in reference.calls) >= 6, reference.calls
    assert reference.calls and all(c[2] is False for c in reference.calls), reference.calls
