"""Reports of finished runs: CSV, Markdown, figures and one self-contained HTML page.

    from unlearnlm.reports import build_report
    build_report([Path("runs/demo")])     # -> {"csv": ..., "markdown": ..., "html": ..., ...}
"""
from unlearnlm.reports.build import build_report, default_out_dir
from unlearnlm.reports.runs import load_results

__all__ = ["build_report", "default_out_dir", "load_results"]
