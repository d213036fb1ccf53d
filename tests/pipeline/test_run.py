"""The whole pipeline on a tiny random model: run dir, results, report, resume."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from unlearnlm.cli import main
from unlearnlm.config import load_config
from unlearnlm.pipeline.scenarios import run


def test_run_writes_results_report_and_resumes(tiny_run_overrides, tmp_path, capsys):
    overrides = tiny_run_overrides + ["methods=[ME+GD,IDK+AP]", "eval.forget_quality=true"]
    assert main(["run", *overrides]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    results = json.loads((run_dir / "results.json").read_text())
    labels = [r["label"] for r in results["rows"]]
    assert labels == ["target", "ME+GD", "IDK+AP"]
    assert "never saw" in results["holdout"]  # the tiny target saw 5 authors: a holdout of unseen ones
    for row in results["rows"]:
        assert set(row["sets"]) == {"forget", "retain", "real_authors", "world_facts", "holdout"}
        # the retain model is there: privleak and the attacks' AUCs are filled in
        assert row["aggregates"]["privleak"] is not None and 0 <= row["aggregates"]["auc_mia_min_k"] <= 1
        assert 0 <= row["aggregates"]["auc_mia_reference"] <= 1
        assert 0 <= row["aggregates"]["model_utility"] <= 1
        assert row["aggregates"]["forget_quality"] is not None
        # paired draws of both models' forget and holdout sets (at 3 questions some resample has
        # the retain model's AUC at 1, where privleak is undefined, so the interval may be None)
        bounds = row["intervals"]["privleak"]
        assert bounds is None or bounds[0] <= row["aggregates"]["privleak"] <= bounds[1]
        assert "auc_mia_reference" in row["intervals"] and "forget_quality" not in row["intervals"]
        # the per-set means in results.json are the means of the per-example records
        records = [json.loads(l) for l in (run_dir / row["eval_dir"] / "forget.jsonl").read_text().splitlines()]
        mean_rouge = sum(r["rouge"] for r in records) / len(records)
        assert abs(mean_rouge - row["sets"]["forget"]["rouge"]) < 1e-9
    # the retain model is evaluated on the forget set (Forget Quality) and the holdout set (privleak) alone
    assert sorted(p.name for p in (run_dir / "eval" / "retain_model").glob("*.jsonl")) == ["forget.jsonl", "holdout.jsonl"]
    # table, CSV, figures and HTML agree with results.json
    with open(run_dir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    for row, csv_row in zip(results["rows"], rows):
        assert abs(float(csv_row["MU"]) - row["aggregates"]["model_utility"]) < 1e-9
        assert abs(float(csv_row["FE"]) - row["aggregates"]["forget_efficacy"]) < 1e-9
    html = (run_dir / "report.html").read_text()
    assert f"{results['rows'][1]['aggregates']['forget_efficacy']:.3f}" in html
    assert (run_dir / "figures" / "mu_fe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "ME+GD" in out and "total time" in out
    # a second run reuses everything: same results, nothing retrained
    first = (run_dir / "results.json").read_text()
    run(load_config("demo", overrides))
    assert json.loads((run_dir / "results.json").read_text())["rows"] == json.loads(first)["rows"]


def test_continual_scenario_chains_tasks(tiny_run_overrides, tmp_path):
    cfg = load_config("demo", tiny_run_overrides + ["scenario=continual", "data.tasks=[1,2]", "methods=[IDK+GD]",
                                                    "unlearn.train.batch_size=20", "eval.eval_epochs=true"])
    run_dir = run(cfg)
    results = json.loads((run_dir / "results.json").read_text())
    epoch_rows = [r for r in results["rows"] if r["epoch"] is not None]
    results["rows"] = [r for r in results["rows"] if r["epoch"] is None]
    assert [(r["label"], r["task"]) for r in results["rows"]] == [
        ("target", None), ("IDK+GD/task1", 1), ("IDK+GD/task2", 2)]
    # eval_epochs: one row per epoch (1 here), on the final row's sets and with its task
    assert [(r["label"], r["task"], r["epoch"]) for r in epoch_rows] == [
        ("IDK+GD/task1/epoch1", 1, 1), ("IDK+GD/task2/epoch1", 2, 1)]
    for final, epoch in zip(results["rows"][1:], epoch_rows):  # after its one epoch: the final model
        assert epoch["aggregates"] == final["aggregates"] and epoch["sets"] == final["sets"]
    second = json.loads((run_dir / "models" / "IDK+GD_task2" / "unlearnlm_manifest.json").read_text())
    assert second["base_model"].endswith("IDK+GD_task1")  # task 2 starts from task 1's model
    assert second["unlearned_tasks"] == ["1", "2"]
    first = json.loads((run_dir / "models" / "IDK+GD_task1" / "unlearnlm_manifest.json").read_text())
    assert second["n_retain"] < first["n_retain"]  # the retain set shrinks as tasks are unlearned
    # after task 2 the forget set holds both tasks' questions (capped at ds_size)
    assert set(results["rows"][2]["sets"]) == {"forget", "retain", "real_authors", "world_facts", "holdout"}


def test_real_world_scenario_with_lm_eval(tiny_run_overrides, tmp_path):
    cfg = load_config("demo", tiny_run_overrides + ["scenario=real_world", "data.tasks=[1]", "methods=[ME+GD]",
                                                    "eval.lm_eval_tasks=[mmlu_offline]", "eval.lm_eval_limit=2",
                                                    "unlearn.train.batch_size=20"])
    run_dir = run(cfg)
    results = json.loads((run_dir / "results.json").read_text())
    assert [r["label"] for r in results["rows"]] == ["target", "ME+GD"]
    for row in results["rows"]:
        assert set(row["sets"]) == {"forget", "neighbor"}
        assert row["aggregates"]["lm_eval:mmlu_offline"] in (0.0, 0.5, 1.0)
        assert row["aggregates"]["lm_eval:mmlu_offline:stderr"] >= 0
        assert row["aggregates"]["tofu_model_utility"] is None


def test_fictitious_without_forget_quality_trains_no_retain_model(tiny_run_overrides, tmp_path):
    cfg = load_config("demo", tiny_run_overrides + ["methods=[GA]", "eval.forget_quality=false"])
    run_dir = run(cfg)
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["target", "GA"]
    assert all(r["aggregates"]["forget_quality"] is None for r in rows)
    assert not (run_dir / "eval" / "retain_model").exists()
    finetuned = list((tmp_path / "cache" / "finetuned").iterdir())
    assert len(finetuned) == 1 and sorted(p.name for p in finetuned[0].iterdir()) == ["target"]


def test_shared_model_eval_key_ignores_options_that_do_not_score():
    from types import SimpleNamespace

    from unlearnlm.pipeline.scenarios import _eval_key

    judges = SimpleNamespace(describe=lambda: {"nli": "n", "embedder": "e"})
    key = _eval_key(load_config("demo"), ["1"], judges)
    assert _eval_key(load_config("demo", ["eval.forget_quality=true", "eval.eval_epochs=true"]), ["1"], judges) == key
    assert _eval_key(load_config("demo", ["eval.ds_size=7"]), ["1"], judges) != key
    assert _eval_key(load_config("demo"), ["2"], judges) != key
    # naming a published target or retain model changes no cache key of anything else
    assert _eval_key(load_config("demo", ["model.target=/a", "model.retain=/b"]), ["1"], judges) == key


def _published_copy(folder, dest):
    """``folder`` as a model from elsewhere: same files, without unlearnlm's manifest."""
    import shutil

    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns("unlearnlm_*", "evaluations"))
    return dest


def _tree(path):
    return sorted((str(p.relative_to(path)), p.stat().st_mtime_ns) for p in path.rglob("*"))


def test_published_target_and_retain_models_skip_finetuning(make_tiny_overrides, tmp_path):
    made = make_tiny_overrides(tmp_path / "made")
    assert main(["finetune", *made, "--output", str(tmp_path / "made" / "models")]) == 0
    target = _published_copy(tmp_path / "made" / "models" / "target", tmp_path / "hub" / "target")
    retain = _published_copy(tmp_path / "made" / "models" / "retain", tmp_path / "hub" / "retain")
    before = _tree(tmp_path / "hub")
    overrides = make_tiny_overrides(tmp_path) + [f"model.target={target}", f"model.retain={retain}",
                                                 "methods=[GA+GD]", "eval.forget_quality=false"]
    run_dir = run(load_config("demo", overrides))
    assert not (tmp_path / "cache" / "finetuned").exists()  # nothing fine-tuned
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["target", "GA+GD"]
    assert all(r["aggregates"]["forget_quality"] is not None for r in rows)  # model.retain implies FQ
    unlearned = json.loads((run_dir / "models" / "GA+GD" / "unlearnlm_manifest.json").read_text())
    assert unlearned["base_model"] == str(target)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["start_models"] == {
        "target": {"from": "model.target", "spec": str(target), "path": str(target),
                   "weights_sha256": _sha256_of_one_file(target / "model.safetensors")},
        "retain": {"from": "model.retain", "spec": str(retain), "path": str(retain),
                   "weights_sha256": _sha256_of_one_file(retain / "model.safetensors")}}
    # the given folders are not written into: their evaluations are cached in unlearnlm's cache
    assert _tree(tmp_path / "hub") == before
    cached = sorted(p.name.split("-")[0] for p in (tmp_path / "cache" / "evaluations").iterdir())
    assert cached == ["retain", "target"]
    # the unlearned model's card carries its own evaluation
    card = (run_dir / "models" / "GA+GD" / "README.md").read_text()
    assert f"| Forget Efficacy (FE) | {rows[1]['aggregates']['forget_efficacy']:.3f} |" in card
    assert f"| Forget Quality (FQ) | {rows[1]['aggregates']['forget_quality']:.3f} |" in card


def test_a_hub_id_is_downloaded_once_without_pickles(tiny_model_dir, monkeypatch):
    import huggingface_hub
    import pytest

    from unlearnlm.errors import ModelError
    from unlearnlm.models.loading import HUB_PATTERNS, local_model

    calls = []

    def fake_snapshot(repo_id, allow_patterns):
        calls.append((repo_id, allow_patterns))
        return str(tiny_model_dir)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    assert local_model("open-unlearning/tofu_Llama-3.2-1B-Instruct_full") == tiny_model_dir
    assert calls == [("open-unlearning/tofu_Llama-3.2-1B-Instruct_full", HUB_PATTERNS)]
    assert not any(p.endswith(".bin") or p == "*" for p in HUB_PATTERNS)

    def unreachable(repo_id, allow_patterns):
        raise OSError("We couldn't connect to 'https://huggingface.co'.\nCheck your connection.")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    with pytest.raises(ModelError, match=r"^model 'org/name': cannot download from the hub \(We couldn't connect"):
        local_model("org/name")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE=1 forbids the hub"):
        local_model("org/name")


def test_retain_model_outside_the_fictitious_scenario_is_a_config_error():
    import pytest

    from unlearnlm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^model\.retain: Forget Quality is measured in the fictitious"):
        load_config("demo", ["scenario=continual", "data.tasks=[1,2]", "model.retain=/x"])


def test_a_run_written_before_an_option_existed_resumes(tiny_run_overrides):
    from unlearnlm.io import read_json, write_json
    from unlearnlm.pipeline.rundir import open_run_dir

    cfg = load_config("demo", tiny_run_overrides)
    run_dir = open_run_dir(cfg)
    old = read_json(run_dir / "config.json")
    del old["model"]["target"], old["model"]["retain"]  # as written by an older version
    del old["eval"]["lm_eval_tasks"], old["eval"]["lm_eval_limit"]
    old["eval"]["mmlu_size"] = 0  # retired since: 0 meant no general-ability evaluation
    write_json(run_dir / "config.json", old)
    assert open_run_dir(cfg) == run_dir


def test_a_run_restored_without_models_or_cache_retrains_and_reevaluates_nothing(tiny_run_overrides, tmp_path,
                                                                                   monkeypatch):
    """A run directory kept without its model folders (committed study records, models deleted
    for space) on a machine with a fresh cache resumes from the stored evaluations."""
    import shutil

    from unlearnlm.evaluation import evaluate as evaluate_module
    from unlearnlm.pipeline import scenarios

    overrides = tiny_run_overrides + ["methods=[GA+GD]", "seeds=[0,1]", "eval.forget_quality=true"]
    run_dir = run(load_config("demo", overrides))
    first = json.loads((run_dir / "results.json").read_text())["rows"]
    shutil.rmtree(run_dir / "models")
    for evaluations in (tmp_path / "cache").rglob("evaluations"):
        shutil.rmtree(evaluations)  # the target's and retain model's cached evaluations
    # one seed's model loses one set: that model alone is retrained and that set alone rescored
    (run_dir / "eval" / "GA+GD_seed1" / "world_facts.summary.json").unlink()

    unlearned, scored = [], []
    real_unlearn, real_score = scenarios.unlearn_model, evaluate_module._score_and_store
    monkeypatch.setattr(scenarios, "unlearn_model", lambda cfg, method, start, out, *a, **k:
                        unlearned.append(out.name) or real_unlearn(cfg, method, start, out, *a, **k))
    monkeypatch.setattr(evaluate_module, "_score_and_store", lambda name, *a, **k:
                        scored.append(name) or real_score(name, *a, **k))
    run(load_config("demo", overrides))
    assert unlearned == ["GA+GD_seed1"] and scored == ["world_facts"]
    again = json.loads((run_dir / "results.json").read_text())["rows"]
    assert [r["label"] for r in again] == [r["label"] for r in first]
    for old, new in zip(first, again):
        assert new["aggregates"] == old["aggregates"]


def test_a_resumed_run_refuses_a_target_with_other_weights(tiny_run_overrides, tmp_path):
    """The target is refitted on a fresh machine when a run resumes there; if its weights differ
    (another processor's float sums), the run stops with a one-line error instead of mixing."""
    from safetensors.torch import load_file, save_file

    from unlearnlm.errors import ConfigError

    overrides = tiny_run_overrides + ["methods=[GA+GD]"]
    run_dir = run(load_config("demo", overrides))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    target = Path(manifest["start_models"]["target"]["path"])
    assert len(manifest["start_models"]["target"]["weights_sha256"]) == 64
    run(load_config("demo", overrides))  # the same weights: resumes
    weights = load_file(target / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1e-3
    save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ConfigError, match="started from a target model with other weights"):
        run(load_config("demo", overrides))


def test_the_manifest_names_the_processor_and_thread_count():
    import torch

    from unlearnlm.training.manifest import environment_info

    info = environment_info()
    assert info["threads"] == torch.get_num_threads()
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    assert info["cpu"] == (names[0] if names else None)


def _sha256_of_one_file(path: Path) -> str:
    """The checksum of a single-file checkpoint, computed in one read (not in blocks)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
