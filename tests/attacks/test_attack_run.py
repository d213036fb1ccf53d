"""Attacks in a tiny run: cached, resumable, no leak of scored questions, in every report."""
from __future__ import annotations

import csv
import json

import torch
from safetensors.torch import load_file

from unlearnlm.cli import main
from unlearnlm.config import load_config
from unlearnlm.pipeline.scenarios import run

ATTACKS = "eval.attacks=[relearn,relearn_retain,quant4,paraphrase,fewshot,system_prompt]"


def _questions(path):
    return {json.loads(line)["question"] for line in path.read_text().splitlines()}


def test_attacks_in_a_run_resume_and_reach_the_reports(tiny_run_overrides, tmp_path):
    overrides = tiny_run_overrides + ["methods=[GA+GD]", "eval.forget_quality=false", ATTACKS,
                                      "eval.attack.quant_group_size=16", "eval.attack.relearn_epochs=1"]
    run_dir = run(load_config("demo", overrides))
    results = json.loads((run_dir / "results.json").read_text())
    got = {(e["label"], e["attack"]) for e in results["robustness"]}
    # the target is attacked where it is its own baseline's source (quantised, prompted), not relearned
    assert got == {("GA+GD", a) for a in ("relearn", "relearn_retain", "quant4", "paraphrase", "fewshot",
                                           "system_prompt")} | {("target", a) for a in ("quant4", "paraphrase",
                                                                                       "fewshot", "system_prompt")}
    ga = {e["attack"]: e for e in results["robustness"] if e["label"] == "GA+GD"}
    assert ga["quant4"]["fe_before"] == next(r for r in results["rows"] if r["label"] == "GA+GD")[
        "aggregates"]["forget_efficacy"]
    assert ga["relearn"]["n"] == 3 and ga["relearn"]["intervals"]["fe_after"] is not None

    attacks = run_dir / "attacks" / "GA+GD"
    # relearning never trains on a question it is scored on; the benign variant trains on no forget question
    scored = _questions(attacks / "relearn" / "eval" / "forget.jsonl")
    trained = set(json.loads((attacks / "relearn" / "model" / "unlearnlm_manifest.json").read_text())["questions"])
    benign = set(json.loads((attacks / "relearn_retain" / "model" / "unlearnlm_manifest.json").read_text())["questions"])
    forget = json.loads((run_dir / "eval" / "GA+GD" / "forget.jsonl").read_text().splitlines()[0])["question"]
    assert trained and scored and trained.isdisjoint(scored)
    assert scored == _questions(attacks / "second_half" / "eval" / "forget.jsonl")
    assert benign and forget not in benign and benign.isdisjoint(trained | scored)
    # the quantised model is a plain folder whose quantised weights take <= 16 values per group of 16
    weights = load_file(attacks / "quant4" / "model" / "model.safetensors")
    down = weights["model.layers.0.mlp.down_proj.weight"]
    assert max(len(torch.unique(g)) for g in down.reshape(-1, 16)) <= 16
    # paraphrase asks the paraphrased questions
    assert _questions(attacks / "paraphrase" / "eval" / "forget.jsonl").isdisjoint(
        _questions(run_dir / "eval" / "GA+GD" / "forget.jsonl"))

    # resuming recomputes nothing (an eval folder's summary.json is rebuilt from its stored records)
    stamps = {p: p.stat().st_mtime_ns for p in (run_dir / "attacks").rglob("*") if p.is_file()
              and p.name != "summary.json"}
    run(load_config("demo", overrides))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((run_dir / "results.json").read_text())["robustness"] == results["robustness"]

    # --cached-only collects what is on disk and computes nothing
    assert main(["attack", str(run_dir), "eval.attacks=[quant8,quant4]", "eval.attack.quant_group_size=16",
                 "--cached-only"]) == 0
    assert not (run_dir / "attacks" / "GA+GD" / "quant8").exists()  # not even a folder
    assert json.loads((run_dir / "results.json").read_text())["robustness"] == results["robustness"]
    # a later attack on the finished run adds its entries and keeps the others; the reports show them
    assert main(["attack", str(run_dir), "eval.attacks=[quant8]", "eval.attack.quant_group_size=16"]) == 0
    entries = json.loads((run_dir / "results.json").read_text())["robustness"]
    assert {(e["label"], e["attack"]) for e in entries} == got | {("GA+GD", "quant8"), ("target", "quant8")}
    md = (run_dir / "results.md").read_text()
    assert "## Robustness to attacks" in md and "quant8" in md and "relearn_retain" in md
    with open(run_dir / "robustness.csv") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == len(entries) and {r["attack"] for r in lines} >= {"quant8", "relearn"}
    html = (run_dir / "report.html").read_text()
    assert "Robustness to attacks" in html and f"{ga['quant4']['fe_after']:.3f}" in html


def test_changed_attack_settings_recompute_that_attack(tiny_run_overrides, tmp_path):
    overrides = tiny_run_overrides + ["methods=[GA+GD]", "eval.forget_quality=false",
                                      "eval.attacks=[fewshot]", "eval.attack.fewshot_k=1"]
    run_dir = run(load_config("demo", overrides))
    first = (run_dir / "attacks" / "GA+GD" / "fewshot" / "eval" / "forget.jsonl").stat().st_mtime_ns
    run(load_config("demo", overrides[:-1] + ["eval.attack.fewshot_k=2"]))
    settings = json.loads((run_dir / "attacks" / "GA+GD" / "fewshot" / "settings.json").read_text())
    assert settings == {"attack": "fewshot", "seed": 0, "fewshot_k": 2}
    assert (run_dir / "attacks" / "GA+GD" / "fewshot" / "eval" / "forget.jsonl").stat().st_mtime_ns != first


def test_bad_attack_options_are_one_line_errors(capsys):
    assert main(["run", "eval.attacks=[quant3]"]) == 2
    assert "eval.attacks[0]: unknown attack 'quant3'" in capsys.readouterr().err
    assert main(["run", "eval.attack.relearn_epochs=0"]) == 2
    assert "eval.attack.relearn_epochs: must be > 0" in capsys.readouterr().err
    assert main(["run", "scenario=continual", "eval.attacks=[quant4]"]) == 2
    assert "not continual" in capsys.readouterr().err


def test_the_retain_model_is_attacked_as_the_control(tiny_run_overrides, tmp_path):
    """With a retain model in the run, it is attacked too: relearning it measures what the attack
    teaches afresh (it never learned the forget set), against which recovery is read."""
    overrides = tiny_run_overrides + ["methods=[GA+GD]", "eval.forget_quality=true", "eval.attacks=[relearn,fewshot]",
                                      "eval.attack.relearn_epochs=1"]
    run_dir = run(load_config("demo", overrides))
    entries = json.loads((run_dir / "results.json").read_text())["robustness"]
    assert {(e["label"], e["attack"]) for e in entries} == {
        ("GA+GD", "relearn"), ("retain_model", "relearn"), ("target", "fewshot"), ("GA+GD", "fewshot"),
        ("retain_model", "fewshot")}
    control = next(e for e in entries if e["label"] == "retain_model" and e["attack"] == "relearn")
    manifest = json.loads((run_dir / "attacks" / "retain_model" / "relearn" / "model" / "unlearnlm_manifest.json")
                          .read_text())
    assert "retain" in manifest["attacked_model"] and control["n"] == 3
    assert main(["report", str(run_dir)]) == 0
    assert "| retain_model |" in (run_dir / "results.md").read_text()
    # --labels splits the work: only those models (and the target, the baseline) are attacked
    assert main(["attack", str(run_dir), "eval.attacks=[paraphrase]", "--labels", "retain_model"]) == 0
    entries = json.loads((run_dir / "results.json").read_text())["robustness"]
    assert {e["label"] for e in entries if e["attack"] == "paraphrase"} == {"target", "retain_model"}
    assert not (run_dir / "attacks" / "GA+GD" / "paraphrase").exists()


def test_unknown_attack_labels_are_a_one_line_error(tiny_run_overrides, capsys):
    run_dir = run(load_config("demo", tiny_run_overrides + ["methods=[GA+GD]", "eval.forget_quality=false"]))
    assert main(["attack", str(run_dir), "eval.attacks=[paraphrase]", "--labels", "GA+GD,NPO+GD"]) == 2
    err = capsys.readouterr().err
    assert "--labels: NPO+GD not among the run's attacked models (GA+GD, target)" in err
    assert not (run_dir / "attacks").exists()
