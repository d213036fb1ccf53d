"""A metric is one registration: it reaches `unlearnlm metrics`, score_set's records and the report."""
from __future__ import annotations

import json

import pytest

from unlearnlm.evaluation import registry
from unlearnlm.evaluation.aggregates import FE_METRICS, MIA_METRICS, MU_METRICS, TOFU_MU_METRICS
from unlearnlm.evaluation.registry import METRICS, metrics_for


@pytest.fixture
def toy_metric(monkeypatch):
    """``toy_length``: the generation's length in characters / 100, registered for this test only."""
    monkeypatch.setattr(METRICS, "_entries", dict(METRICS._entries))

    @registry.metric("toy_length", "length of the greedy generation / 100 (a test metric)",
                     needs={"generation"}, title="Toy length", short="TL")
    def toy_length(ex):
        return len(ex.generation) / 100

    return "toy_length"


def test_aggregates_read_their_metrics_from_the_registry():
    assert MU_METRICS == ("rouge", "probability", "truth_ratio", "token_entropy", "cosine_similarity", "entailment")
    assert FE_METRICS == ("rouge", "probability", "truth_ratio", "cosine_similarity", "entailment")
    assert TOFU_MU_METRICS == ("rouge", "probability", "truth_ratio")
    assert MIA_METRICS == ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus", "mia_gradnorm")
    assert [m.name for m in metrics_for("holdout", "tofu")] == list(MIA_METRICS)
    assert [m.name for m in metrics_for("utility", "tofu")] == list(MU_METRICS)
    assert {m.name for m in metrics_for("forget", "tofu")} == set(MU_METRICS) | set(MIA_METRICS) | {
        "exact_memorisation", "extraction_strength"}
    with pytest.raises(ValueError, match="unknown stage"):
        registry.metric("bad", "x", needs={"telepathy"})


def test_a_toy_metric_reaches_the_listing_the_records_and_the_report(toy_metric, tiny_model_dir, tmp_path,
                                                                       capsys, monkeypatch):
    from unlearnlm.cli import main
    from unlearnlm.config.schema import RunConfig
    from unlearnlm.data import tofu
    from unlearnlm.data.loading import resolve_data_dir
    from unlearnlm.evaluation.evaluate import evaluate_model
    from unlearnlm.evaluation.judges.factory import Judges
    from unlearnlm.reports.table import render_markdown, results_table

    assert main(["metrics"]) == 0
    listing = capsys.readouterr().out
    assert "toy_length" in listing and "length of the greedy generation / 100" in listing
    assert "mia_min_k_plus_plus" in listing and "extraction_strength" in listing

    class Embedder:
        name = "stub"

        def encode(self, texts):
            import numpy as np

            return np.ones((len(texts), 4))

    class NLI:
        name, info = "stub", {}

        def is_entailment(self, premises, hypotheses):
            return [False] * len(premises)

    cfg = RunConfig()
    cfg.model.name, cfg.eval.max_new_tokens, cfg.eval.bf16 = str(tiny_model_dir), 6, "false"
    cfg.eval.metrics = [*MU_METRICS, "toy_length"]
    sets = {"retain": tofu.eval_sets(resolve_data_dir(None), "forget01", ["1"], 2)["retain"]}
    summary = evaluate_model(tiny_model_dir, cfg, sets, "tofu", tmp_path, Judges(Embedder(), NLI()), progress=False)
    records = [json.loads(line) for line in (tmp_path / "retain.jsonl").read_text().splitlines()]
    assert [r["toy_length"] for r in records] == [len(r["generation"]) / 100 for r in records]
    assert summary["sets"]["retain"]["toy_length"] == pytest.approx(sum(r["toy_length"] for r in records) / 2)

    row = {"label": "m", "aggregates": summary["aggregates"], "sets": summary["sets"], "status": "ok"}
    md = render_markdown(results_table({"run_name": "r", "rows": [row]}))
    assert "retain/TL" in md.splitlines()[0]  # its short name, whenever the reports were imported
