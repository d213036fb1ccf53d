"""unlearnlm compare: paired differences of two rows of finished runs."""
from __future__ import annotations

import json

from unlearnlm.cli import main
from unlearnlm.evaluation.aggregates import MU_METRICS


def _model(run_dir, label, shift):
    eval_dir = run_dir / "eval" / label
    eval_dir.mkdir(parents=True)
    for s in ("forget", "retain"):
        recs = [{"question": f"{s}{i}", **{m: 0.5 + 0.02 * i - shift for m in MU_METRICS}} for i in range(10)]
        (eval_dir / f"{s}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (eval_dir / "summary.json").write_text(json.dumps({"family": "tofu"}))
    return {"label": label, "method": label, "status": "ok", "aggregates": {}, "sets": {"forget": {}, "retain": {}},
            "eval_dir": f"eval/{label}"}


def test_compare_prints_paired_differences(tmp_path, capsys):
    run = tmp_path / "run"
    rows = [_model(run, "A", 0.0), _model(run, "B", 0.1)]
    (run / "results.json").write_text(json.dumps({"run_name": "run", "rows": rows}))
    assert main(["compare", f"{run}:A", f"{run}:B", "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    # B's every score is A's minus 0.1: FE(A) - FE(B) = -0.1 in every resample
    assert "FE         A - B = -0.100 [-0.100, -0.100]  B higher" in out
    assert "MU_retain" in out
    assert main(["compare", f"{run}:A", f"{run}:C"]) == 2
    assert "has no row or seeded method 'C'; its rows: A, B" in capsys.readouterr().err
    assert main(["compare", "nocolon", f"{run}:B"]) == 2
    capsys.readouterr()
    assert main(["compare", f"{run}:A", f"{run}:B", "--resamples", "0"]) == 2  # not an empty table
    assert capsys.readouterr().err.strip() == "error: compare: --resamples must be >= 1, got 0"


def test_compare_pools_the_seeds_of_a_method(tmp_path, capsys):
    run = tmp_path / "run"
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.1)):  # A/seed1 is A/seed0 minus 0.1 everywhere
        rows.append({**_model(run, f"A_seed{seed}", shift), "label": f"A/seed{seed}", "method": "A", "seed": seed})
    rows.append(_model(run, "B", 0.2))
    (run / "results.json").write_text(json.dumps({"run_name": "run", "rows": rows}))
    assert main(["compare", f"{run}:A", f"{run}:B", "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    # FE(A) averaged over seeds is FE(B) - 0.15 in every resample (shifts 0 and 0.1 against 0.2)
    assert "A pools 2 models (A/seed0, A/seed1)" in out
    assert "FE         A - B = -0.150 [-0.150, -0.150]  B higher" in out
    assert main(["compare", f"{run}:A/seed1", f"{run}:B", "--resamples", "200"]) == 0
    assert "FE         A - B = -0.100 [-0.100, -0.100]" in capsys.readouterr().out
    assert main(["compare", f"{run}:Z", f"{run}:B"]) == 2
    assert "no row or seeded method 'Z'" in capsys.readouterr().err


def test_comparison_markdown_counts_the_seeds_that_agree(tmp_path):
    from unlearnlm.reports.compare import comparison_markdown

    run = tmp_path / "run"
    rows = []
    for method, shifts in (("A", (0.0, 0.1)), ("B", (0.02, 0.02))):
        for seed, shift in enumerate(shifts):
            row = _model(run, f"{method}_seed{seed}", shift)
            fe = 0.4 + shift  # FE rises as the scores fall
            rows.append({**row, "label": f"{method}/seed{seed}", "method": method, "seed": seed,
                         "aggregates": {"forget_efficacy": fe}})
    (run / "results.json").write_text(json.dumps({"run_name": "run", "rows": rows}))
    table = comparison_markdown([("C1", f"{run}:A", f"{run}:B")], resamples=100, keys=(("FE", "forget_efficacy"),))
    # seed-averaged shifts 0.05 against 0.02: every score of A is 0.03 lower, FE(A) - FE(B) = +0.03
    # in every resample; the rows' own FE differ by 0.40 - 0.42 (seed 0) and 0.50 - 0.42 (seed 1):
    # one of the two seeds shares the sign
    assert "| C1 | A | B | +0.030 [+0.030, +0.030]; 1/2 seeds |" in table


def test_a_claim_cell_counts_the_seeds_whose_difference_has_the_pooled_sign():
    from unlearnlm.reports.compare import _claim_cell

    assert _claim_cell((0.1, 0.05, 0.15), [0.2, 0.1, -0.05]) == "+0.100 [+0.050, +0.150]; 2/3 seeds"
    # two saturated models (every AUC 1.0): every seed's difference is exactly 0, like the pooled one
    assert _claim_cell((0.0, 0.0, 0.0), [0.0, 0.0]) == "+0.000 [+0.000, +0.000]; 2/2 seeds"
    assert _claim_cell((0.0, -0.1, 0.1), [0.1, 0.0]) == "+0.000 [-0.100, +0.100]; 1/2 seeds"
    assert _claim_cell(None, []) == "—"


def test_compare_names_missing_or_damaged_records(tmp_path, capsys):
    run = tmp_path / "run"
    rows = [_model(run, "A", 0.0), _model(run, "B", 0.1)]
    (run / "results.json").write_text(json.dumps({"run_name": "run", "rows": rows}))
    retain = run / "eval" / "B" / "retain.jsonl"
    retain.write_text('{"question": "retain0"}\n{"question": \n')  # cut short
    assert main(["compare", f"{run}:A", f"{run}:B"]) == 2
    assert f"{retain}:2: not a JSON record" in capsys.readouterr().err
    retain.unlink()  # a folder copied without its records: an error, not a silently shorter table
    assert main(["compare", f"{run}:A", f"{run}:B"]) == 2
    assert f"compare: {retain}: file not found (the per-question records of B)" in capsys.readouterr().err
