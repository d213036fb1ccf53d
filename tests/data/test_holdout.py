"""The holdout set: TOFU's own when present, else authors the target never saw, else none."""
from __future__ import annotations

import json

import pytest

from unlearnlm.config import load_config
from unlearnlm.data import holdout
from unlearnlm.data.loading import read_jsonl, resolve_data_dir
from unlearnlm.errors import DataError


@pytest.fixture(scope="module")
def data_dir():
    try:
        return resolve_data_dir(None)
    except DataError:
        pytest.skip("no data directory")


def test_demo_target_gets_the_next_unseen_authors(data_dir, tmp_path):
    cfg = load_config("demo", [f"model.cache_dir={tmp_path}", f"data.data_dir={data_dir}"])
    rows, source = holdout.holdout_rows(cfg)
    retain_eval = read_jsonl(data_dir / "tofu" / "retain_perturbed.json")
    # the demo target trained on forget01 task 1 and the first 60 retain_perturbed QA (3 authors):
    # the holdout is the next 2 authors, as many QA as the forget set (40)
    assert [r["question"] for r in rows] == [r["question"] for r in retain_eval[60:100]]
    assert "never saw" in source
    from unlearnlm.training.finetune import finetune_rows

    trained = {r["question"] for r in finetune_rows(cfg, "target")}
    assert not trained & {r["question"] for r in rows}


def test_tofu_holdout_file_wins_and_missing_ones_are_skipped(data_dir, tmp_path):
    fetched = tmp_path / "data" / "tofu"
    fetched.mkdir(parents=True)
    qa = [{"question": f"Q{i}?", "answer": f"A{i}.", "task_id": "1"} for i in range(40)]
    (fetched / "holdout01.json").write_text("".join(json.dumps(r) + "\n" for r in qa))
    cfg = load_config("demo", [f"model.cache_dir={tmp_path}", f"data.data_dir={data_dir}"])
    rows, source = holdout.holdout_rows(cfg)
    assert [r["question"] for r in rows] == [r["question"] for r in qa] and source.startswith("TOFU holdout01")

    given = load_config("demo", [f"model.cache_dir={tmp_path / 'empty'}", f"data.data_dir={data_dir}",
                                 f"model.target={tmp_path}"])
    rows, why = holdout.holdout_rows(given)
    assert rows is None and "model.target" in why and "skipped" in why
    everything = load_config("demo", [f"model.cache_dir={tmp_path / 'empty'}", f"data.data_dir={data_dir}",
                                      "finetune.retain_rows=null"])
    rows, why = holdout.holdout_rows(everything)
    assert rows is None and "every TOFU author" in why
    # regularising on TOFU's retain set trains on every retain author: none is unseen any more
    tofu_retain = load_config("demo", [f"model.cache_dir={tmp_path / 'empty'}", f"data.data_dir={data_dir}",
                                       "unlearn.retain_set=tofu"])
    rows, why = holdout.holdout_rows(tofu_retain)
    assert rows is None and why.startswith("unlearn.retain_set=tofu trains on every retain author")
    real = load_config("demo", [f"model.cache_dir={tmp_path / 'empty'}", "scenario=real_world", "data.split=real_world"])
    assert holdout.holdout_rows(real)[0] is None
