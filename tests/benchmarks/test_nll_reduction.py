"""benchmarks/nll_reduction.py: a --quick run agrees with cross_entropy and prints its SUMMARY line."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_agrees_and_reports(capsys):
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("nll_reduction", REPO / "benchmarks" / "nll_reduction.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--threads", "1", "--dtype", "fp32"]) == 0  # 0: within 1e-5 nats
    out = capsys.readouterr().out
    assert "within 1e-05" in out
    assert "SUMMARY nll_reduction: cross_entropy / chunked logsumexp seconds" in out
