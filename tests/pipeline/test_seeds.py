"""seeds=[...]: every method once per unlearning seed, resumable per seed, summarised across seeds."""
from __future__ import annotations

import json

from safetensors.torch import load_file

from unlearnlm.cli import main
from unlearnlm.config import load_config
from unlearnlm.pipeline.scenarios import run, seed_suffixes
from unlearnlm.reports.seeds import seed_groups, seeds_markdown


def _row(seed, fe, mu, ci=None):
    return {"label": f"GA+GD/seed{seed}", "method": "GA+GD", "seed": seed, "epoch": None, "task": None,
            "status": "ok", "aggregates": {"forget_efficacy": fe, "model_utility": mu},
            "intervals": {"forget_efficacy": ci} if ci else {}}


def test_across_seed_summary_by_hand():
    # FE 0.4 and 0.6: mean 0.5, sd = sqrt((0.1^2 + 0.1^2) / (2 - 1)) = 0.1414; bootstrap
    # intervals (0.3, 0.5) and (0.5, 0.7): half-widths 0.1 and 0.1 -> 0.100.
    results = {"run_name": "r", "rows": [{"label": "target", "method": None, "status": "ok", "aggregates": {}},
                                         _row(0, 0.4, 0.2, (0.3, 0.5)), _row(1, 0.6, 0.4, (0.5, 0.7))]}
    (group,) = seed_groups(results)
    assert group["seeds"] == [0, 1]
    fe = group["stats"]["forget_efficacy"]
    assert abs(fe["sd"] - 0.02 ** 0.5) < 1e-12 and fe["min"] == 0.4 and fe["max"] == 0.6
    text = seeds_markdown(results)
    assert "| GA+GD | 0,1 | 0.300 ± 0.141 | — | 0.500 ± 0.141 (CI ±0.100) |" in text
    assert seeds_markdown({"rows": [_row(0, 0.4, 0.2)]}) == ""  # one seed: nothing to summarise
    # a failed seed is left out of the statistics but named beside the seeds that count
    failed = {**_row(2, 0.9, 0.9), "status": "failed", "error": "non-finite loss"}
    results["rows"].append(failed)
    assert "| GA+GD | 0,1 (2 failed) | 0.300 ± 0.141 | — | 0.500 ± 0.141 (CI ±0.100) |" in seeds_markdown(results)


def test_seed_labels():
    assert seed_suffixes(load_config("demo")) == [(0, "")]
    assert seed_suffixes(load_config("demo", ["seeds=[3]"])) == [(3, "/seed3")]  # never the plain label
    assert seed_suffixes(load_config("demo", ["seeds=[0,2]"])) == [(0, "/seed0"), (2, "/seed2")]


def test_each_seed_is_its_own_model_and_resumes(tiny_run_overrides, tmp_path):
    overrides = tiny_run_overrides + ["methods=[GA+GD]", "eval.forget_quality=false"]
    run_dir = run(load_config("demo", overrides + ["seeds=[0,1]"]))
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    assert [(r["label"], r["seed"]) for r in rows] == [("target", None), ("GA+GD/seed0", 0), ("GA+GD/seed1", 1)]
    models = run_dir / "models"
    for seed in (0, 1):
        assert json.loads((models / f"GA+GD_seed{seed}" / "unlearnlm_manifest.json").read_text())["seed"] == seed
    w0, w1 = (load_file(models / f"GA+GD_seed{s}" / "model.safetensors") for s in (0, 1))
    assert any(not (w0[k] == w1[k]).all() for k in w0)  # another data order: another model
    stamp = (models / "GA+GD_seed1" / "model.safetensors").stat().st_mtime_ns
    run(load_config("demo", overrides + ["seeds=[0,1,2]"]))  # a third seed: the first two reused
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["target", "GA+GD/seed0", "GA+GD/seed1", "GA+GD/seed2"]
    assert (models / "GA+GD_seed1" / "model.safetensors").stat().st_mtime_ns == stamp
    assert main(["report", str(run_dir)]) == 0
    md = (run_dir / "results.md").read_text()
    assert "## Across seeds" in md and "| GA+GD | 0,1,2 |" in md


def test_repeated_seeds_are_a_config_error(capsys):
    assert main(["run", "seeds=[1,1]"]) == 2
    assert "seeds: non-negative integers, each listed once" in capsys.readouterr().err
