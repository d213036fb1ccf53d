"""experiments/summarise.py: the learning-rate rule and tables built from results.json files."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "experiments" / "summarise.py"
_spec = importlib.util.spec_from_file_location("summarise", _PATH)
summarise = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(summarise)


def _row(method, lr, mu, fe, status="ok", **extra):
    return {"label": method, "method": method, "lr": lr, "epoch": None, "task": extra.pop("task", None),
            "status": status, "aggregates": {"model_utility": mu, "forget_efficacy": fe, "forget_quality": 0.5},
            "sets": {"forget": dict.fromkeys(summarise.METRICS, 0.25)}, **extra}


def test_select_lr_best_mu_above_the_bar_else_highest_fe():
    runs = [_row("GA", 5e-5, 0.40, 0.50), _row("GA", 1e-4, 0.30, 0.70)]
    assert summarise.select_lr(runs, fe_bar=0.6)["lr"] == 1e-4  # only 1e-4 clears the bar
    assert summarise.select_lr(runs, fe_bar=0.4)["lr"] == 5e-5  # both clear it: better MU
    assert summarise.select_lr(runs, fe_bar=0.9)["lr"] == 1e-4  # neither: higher FE
    assert summarise.select_lr([_row("GA", 5e-5, 0.1, 0.9, status="failed"), runs[0]], 0.6)["lr"] == 5e-5


def test_grid_tables_use_the_grid_wide_median_fe(tmp_path):
    for name, lr, rows in [("grid-lr5e-5", 5e-5, [("GA", 0.4, 0.5), ("ME", 0.5, 0.6)]),
                           ("grid-lr1e-4", 1e-4, [("GA", 0.3, 0.7), ("ME", 0.45, 0.8)])]:
        (tmp_path / name).mkdir()
        results = {"rows": [{**_row("target", None, 0.5, 0.1), "method": None}]
                   + [_row(m, lr, mu, fe) for m, mu, fe in rows]}
        (tmp_path / name / "results.json").write_text(json.dumps(results))
    text = summarise.grid_tables(tmp_path)
    assert "Selection bar (grid-wide median FE): 0.650" in text  # median of 0.5, 0.6, 0.7, 0.8
    assert "| GA | 0.400 / - / 0.500 / 0.5 | 0.300 / - / 0.700 / 0.5 | 1e-4 |" in text
    assert "| ME | 0.500 / - / 0.600 / 0.5 | 0.450 / - / 0.800 / 0.5 | 1e-4 |" in text
    assert "| GA | 1e-4 | 0.300 | - | - | 0.700 | 0.5 | .25 / .25 / .25 / .25 / .25 / .25 |" in text
    # A partial grid held to a given bar: at 0.55 only ME's lr 5e-5 run (FE 0.6) and both 1e-4
    # runs clear it; ME's better MU among them is at 5e-5.
    held = summarise.grid_tables(tmp_path, fe_bar=0.55)
    assert "Selection bar (given on the command line): 0.550" in held
    assert "| ME | 0.500 / - / 0.600 / 0.5 | 0.450 / - / 0.800 / 0.5 | 5e-5 |" in held


def test_continual_table_one_cell_per_task(tmp_path):
    (tmp_path / "continual").mkdir()
    rows = [{**_row("target", None, 0.5, 0.1), "method": None},
            _row("ME+GD", 5e-5, 0.4, 0.6, task=1), _row("ME+GD", 5e-5, 0.3, 0.7, task=2),
            _row("GA+GD", 1e-4, 0.0, 0.8, task=1), _row("GA+GD", 1e-4, 0, 0, status="failed", task=2)]
    (tmp_path / "continual" / "results.json").write_text(json.dumps({"rows": rows}))
    text = summarise.continual_table(tmp_path)
    assert "| ME+GD | 0.400 / 0.600 | 0.300 / 0.700 |" in text
    assert "| GA+GD | 0.000 / 0.800 | failed |" in text


def test_missing_studies_are_reported_not_invented(tmp_path):
    assert "No continual run found." in summarise.continual_table(tmp_path)
    assert "No grid run found." in summarise.grid_tables(tmp_path)


def test_zero_scores_names_the_utility_scores_that_zero_mu():
    row = {"sets": {"forget": {"entailment": 0.0}, "retain": {"rouge": 0.5, "entailment": 0.0},
                    "real_authors": {"token_entropy": 0.0, "entailment": 0.1}}}
    assert summarise.zero_scores(row) == "Ret ES, RA TE"
    assert summarise.zero_scores({"sets": {"retain": {"rouge": 0.2}}}) == "-"


def test_repeats_ngram_flags_loops_only():
    assert summarise.repeats_ngram("in the year 1958, in the year 1958, in the year 1958")
    assert not summarise.repeats_ngram("in the year 1958, in the year 1958")  # twice is not a loop
    assert not summarise.repeats_ngram("Jaime Vasquez was born in Santiago in 1958.")
    assert summarise.repeats_ngram("a b a b a b", n=2, times=3)


def test_family_table_rows_and_failures(tmp_path):
    (tmp_path / "gemma").mkdir()
    ok = _row("ME+GD", 5e-5, 0.2, 0.6)
    ok["aggregates"].update(mu_retain=0.8, tofu_model_utility=None, mmlu=0.31)
    rows = [ok, {**_row("GA+GD", 1e-4, 0, 0, status="failed"), "error": "NaN loss"}]
    (tmp_path / "gemma" / "results.json").write_text(json.dumps({"model": "gemma3-270m", "forget": "forget01 task 1",
                                                                 "rows": rows}))
    text = summarise.family_table(tmp_path, "gemma", "Gemma")
    assert "| ME+GD | 5e-5 | 0.200 | 0.800 | - | 0.600 | 0.31 | .25 / .25 / .25 / .25 / .25 / .25 | - |" in text
    assert "| GA+GD | 1e-4 | failed: NaN loss |" in text
    ok["aggregates"].update({"lm_eval:mmlu_offline": 0.26})  # lm-eval's value wins over the legacy one
    (tmp_path / "gemma" / "results.json").write_text(json.dumps({"model": "gemma3-270m", "forget": "forget01 task 1",
                                                                 "rows": rows}))
    assert "| 0.800 | - | 0.600 | 0.26 |" in summarise.family_table(tmp_path, "gemma", "Gemma")


def test_seed_table_pairs_shared_methods_and_averages_the_gaps(tmp_path):
    for name, rows in [("grid-lr1e-4", [("GA", 0.30, 0.70), ("ME", 0.50, 0.60), ("NPO", 0.1, 0.5)]),
                       ("grid-lr1e-4-seed1", [("GA", 0.20, 0.75), ("ME", 0.50, 0.40)])]:
        (tmp_path / name).mkdir()
        results = {"rows": [{**_row("target", None, 0.5, 0.1), "method": None}]
                   + [_row(m, 1e-4, mu, fe) for m, mu, fe in rows]}
        (tmp_path / name / "results.json").write_text(json.dumps(results))
    text = summarise.seed_table(tmp_path)
    assert "| GA | 0.300 / 0.200 | - / - | 0.700 / 0.750 | 0.500 / 0.500 |" in text
    assert "NPO" not in text  # only in the first run
    # MU gaps 0.1 and 0.0 -> 0.05; FE gaps 0.05 and 0.2 -> 0.125; FQ equal -> 0
    assert "| mean absolute difference | 0.050 | - | 0.125 | 0.000 |" in text
    assert "Needs both" in summarise.seed_table(tmp_path / "missing")


def test_privacy_table_lists_target_and_methods(tmp_path):
    target = _row("target", None, 0.5, 0.1)
    target.update(method=None)
    target["aggregates"].update(privleak=-97.5, auc_mia_min_k=0.99, auc_mia_reference=1.0)
    me = _row("ME+GD", 1e-4, 0.4, 0.7)
    me["aggregates"].update(privleak=12.25, auc_mia_min_k=0.44)
    me["intervals"] = {"auc_mia_min_k": [0.25, 0.625]}
    me["sets"]["forget"].update(exact_memorisation=0.5, extraction_strength=0.125)
    rmu = _row("RMU", 1e-4, 0.3, 0.8, status="failed")
    for name, rows in (("privacy-lr1e-4", [target, me]), ("privacy-rmu-lr1e-2", [target, rmu])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(
            {"rows": rows, "holdout": "40 QA of retain_perturbed authors the target never saw"}))
    text = summarise.privacy_table(tmp_path)
    assert "Holdout set: 40 QA of retain_perturbed authors the target never saw." in text
    assert "| target | - | 0.100 | -97.5 | 0.990 | - | - | - | - | 1.000 | - | - |" in text
    assert "| ME+GD | lr 1e-4 | 0.700 | 12.2 | 0.440 [0.250, 0.625] | - | - | - | - | - | 0.500 | 0.125 |" in text
    assert "| RMU | RMU lr 1e-2 | failed |" in text
    assert "No privacy run found" in summarise.privacy_table(tmp_path / "none")


def test_robustness_table_shows_fe_under_each_attack_and_the_recovery(tmp_path):
    entry = {"label": "GA+GD", "method": "GA+GD", "attack": "quant4", "scored": "forget", "n": 20,
             "fe_before": 0.5, "fe_after": 0.3, "fe_baseline": 0.1, "change": -0.2, "recovery": 0.5,
             "intervals": {"fe_after": (0.25, 0.35), "change": (-0.3, -0.1), "recovery": (0.3, 0.7)}}
    target = {**entry, "label": "target", "method": None, "fe_before": 0.12, "fe_after": 0.1, "recovery": None,
              "intervals": {}}
    (tmp_path / "attacks").mkdir()
    (tmp_path / "attacks" / "results.json").write_text(json.dumps({"rows": [], "robustness": [target, entry]}))
    text = summarise.robustness_table(tmp_path)
    assert "| model | FE | quant4 |" in text
    assert "| target | 0.120 | 0.100 |" in text and "| GA+GD | 0.500 | 0.300 [0.25, 0.35] |" in text
    assert "| GA+GD | 0.500 [0.30, 0.70] |" in text  # the recovery table: (0.5 - 0.3) / (0.5 - 0.1)
    assert "Unlearned models with results, per attack: quant4 (1)." in text
    assert "No attacked run found" in summarise.robustness_table(tmp_path / "missing")
    # a relearning attack's baseline is the target as it is: its FE on the scored half is shown
    relearn = {**entry, "attack": "relearn", "scored": "second_half", "fe_baseline": 0.15}
    (tmp_path / "attacks" / "results.json").write_text(json.dumps({"rows": [], "robustness": [relearn]}))
    assert "| target | 0.150 | — |" in summarise.robustness_table(tmp_path)


def test_evidence_tables_pool_seeds_and_compare_the_claims_pairs(tmp_path):
    """Two seeds of ME+GD and GA+GD whose every score differs by a constant: the table shows the
    exact seed-averaged difference with a degenerate interval, and the pairs not run are left out."""
    from unlearnlm.evaluation.aggregates import MU_METRICS

    run = tmp_path / "evidence"
    rows = []
    for method, shift in (("target", 0.0), ("ME+GD", 0.3), ("GA+GD", 0.1)):
        for seed in ((None,) if method == "target" else (0, 1)):
            label = method if seed is None else f"{method}/seed{seed}"
            eval_dir = run / "eval" / label.replace("/", "_")
            eval_dir.mkdir(parents=True)
            for s in ("forget", "retain"):
                recs = [{"question": f"{s}{i}", **{m: 0.6 + 0.02 * i - shift for m in MU_METRICS}} for i in range(8)]
                if s == "forget":  # LOSS attack: GA+GD's forget NLLs below every holdout NLL, ME+GD's above
                    recs = [{**r, "mia_loss": 1.0 + 0.01 * i if method == "GA+GD" else 3.0 + 0.01 * i}
                            for i, r in enumerate(recs)]
                (eval_dir / f"{s}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
            holdout = [{"question": f"holdout{i}", "mia_loss": 2.0 + 0.01 * i} for i in range(8)]
            (eval_dir / "holdout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in holdout))
            (eval_dir / "summary.json").write_text(json.dumps({"family": "tofu"}))
            fe = 0.3 + shift + 0.01 * (seed or 0)
            rows.append({"label": label, "method": None if seed is None else method, "seed": seed, "lr": 1e-4,
                         "epoch": None, "task": None, "status": "ok", "eval_dir": f"eval/{label.replace('/', '_')}",
                         "aggregates": {"model_utility": 0.5, "mu_retain": 0.8, "forget_efficacy": fe,
                                        "auc_mia_loss": 1.0 if method == "GA+GD" else 0.0},
                         "intervals": {"forget_efficacy": [fe - 0.05, fe + 0.05]},
                         "sets": {"forget": dict.fromkeys(summarise.METRICS, 0.3), "retain": {}, "holdout": {}}})
    (run / "results.json").write_text(json.dumps({"run_name": "evidence", "model": "m", "forget": "forget01 task 1",
                                                  "rows": rows}))
    text = summarise.evidence_tables(tmp_path)
    # ME+GD's scores are 0.2 below GA+GD's on every question of both seeds: FE +0.2 exactly
    assert "| C1 | ME+GD | GA+GD | +0.200 [+0.200, +0.200]; 2/2 seeds |" in text
    # the attacks' AUCs, paired the same way: ME+GD's forget set looks unseen (AUC 0 in every
    # resample), GA+GD's looks trained-on (AUC 1): -1 exactly; no Min-K% scores, no cells
    assert "| C1 | ME+GD | GA+GD | — | — | -1.000 [-1.000, -1.000]; 2/2 seeds |" in text
    assert "NPO+GD" not in text  # not run: no row, no comparison
    # across seeds: FE of ME+GD is 0.6 and 0.61, mean 0.605, sd 0.00707, bootstrap half-width 0.05
    assert "0.605 ± 0.007 (CI ±0.050)" in text
    assert "No `evidence-forget05` run found" in text
    # the rows with their intervals: ME+GD seed 0 has FE 0.6 in [0.55, 0.65]
    assert "| ME+GD/seed0 | 0.500 | 0.800 | — | 0.600 [0.550, 0.650] |" in text
