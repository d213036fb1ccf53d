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
    assert "has no row 'C'; its rows: A, B" in capsys.readouterr().err
    assert main(["compare", "nocolon", f"{run}:B"]) == 2
