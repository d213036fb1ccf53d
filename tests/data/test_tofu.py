"""TOFU / real-world selections: row counts on the shared data, clear errors on bad copies."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from unlearnlm.data import tofu
from unlearnlm.data.loading import read_jsonl
from unlearnlm.errors import DataError


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _set_line(path: Path, lineno: int, text: str) -> None:
    lines = _lines(path)
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


# --------------------------------------------------------------------------- real data counts
def test_forget01_task1_has_40_rows(data_dir):
    rows = tofu.forget_rows(data_dir, "forget01", ["1"])
    assert len(rows) == 40
    assert all(r["task_id"] == "1" for r in rows)


def test_forget01_retain_set_is_retain90_plus_other_tasks(data_dir):
    retain = tofu.retain_rows(data_dir, "forget01", ["1"])
    assert len(retain) == 3960
    retain90 = read_jsonl(data_dir / "tofu" / "retain90.json", ("question", "answer"))
    assert len(retain90) == 3600
    assert retain[:3600] == retain90
    others = retain[3600:]
    assert {r["task_id"] for r in others} == {str(t) for t in range(2, 11)}
    forget_q = {r["question"] for r in tofu.forget_rows(data_dir, "forget01", ["1"])}
    assert not forget_q & {r["question"] for r in retain}


def test_forget10_has_9_tasks(data_dir):
    assert tofu.task_ids(data_dir, "forget10") == [str(t) for t in range(1, 10)]


def test_forget01_has_10_tasks_and_real_world_20(data_dir):
    assert tofu.task_ids(data_dir, "forget01") == [str(t) for t in range(1, 11)]
    assert tofu.task_ids(data_dir, "real_world") == [str(t) for t in range(1, 21)]


def test_forget05_task1_has_200_rows(data_dir):
    assert len(tofu.forget_rows(data_dir, "forget05", ["1"])) == 200


def test_real_world_forget_task1_has_20_rows(data_dir):
    rows = tofu.forget_rows(data_dir, "real_world", ["1"])
    assert len(rows) == 20
    assert all(r["golden_answer"].strip() for r in rows)
    assert len({r["name"] for r in rows}) == 1  # one person per task


def test_eval_sets_forget01_task1(data_dir):
    sets = tofu.eval_sets(data_dir, "forget01", ["1"], ds_size=300)
    assert {k: len(v) for k, v in sets.items()} == {
        "forget": 40, "retain": 300, "real_authors": 100, "world_facts": 117,
    }
    assert all(len(r["perturbed_answer"]) >= 1 for rows in sets.values() for r in rows)
    assert all("paraphrased_answer" in r for r in sets["forget"] + sets["retain"])


def test_eval_sets_cap_keeps_first_rows(data_dir):
    small = tofu.eval_sets(data_dir, "forget01", ["1"], ds_size=5)
    full = tofu.eval_sets(data_dir, "forget01", ["1"], ds_size=10**9)
    assert all(len(v) == 5 for v in small.values())
    assert all(small[k] == full[k][:5] for k in small)


def test_interleave_tasks_round_robin():
    rows = [{"task_id": t, "i": i} for t, i in [("1", 0), ("1", 1), ("1", 2), ("2", 0), ("3", 0), ("3", 1)]]
    order = [(r["task_id"], r["i"]) for r in tofu.interleave_tasks(rows)]
    assert order == [("1", 0), ("2", 0), ("3", 0), ("1", 1), ("3", 1), ("1", 2)]


def test_eval_sets_cap_spreads_forget_over_tasks(data_dir):
    sets = tofu.eval_sets(data_dir, "forget01", ["1", "2", "3"], ds_size=9)
    assert [r["task_id"] for r in sets["forget"]] == ["1", "2", "3"] * 3
    task2 = tofu.forget_rows(data_dir, "forget01", ["2"], perturbed=True)
    assert [r["question"] for r in sets["forget"][1::3]] == [r["question"] for r in task2[:3]]


def test_continual_retain_shrinks(data_dir):
    assert len(tofu.retain_rows(data_dir, "forget01", ["1", "2"])) == 3920
    assert len(tofu.retain_rows(data_dir, "forget01", ["1", "2", "3"])) == 3880


def test_all_tofu_rows_is_4000(data_dir):
    rows = tofu.all_tofu_rows(data_dir)
    assert len(rows) == 4000
    assert len({r["question"] for r in rows}) > 3900  # TOFU has a few repeated questions at most


def test_demo_retain_rows_are_first_rows_of_retain_perturbed(data_dir):
    perturbed = read_jsonl(data_dir / "tofu" / "retain_perturbed.json", ("question", "answer"))
    for n in (0, 1, 60):
        rows = tofu.demo_retain_rows(data_dir, n)
        assert [(r["question"], r["answer"]) for r in rows] == [
            (r["question"], r["answer"]) for r in perturbed[:n]
        ]
    with pytest.raises(DataError, match="retain_rows"):
        tofu.demo_retain_rows(data_dir, len(perturbed) + 1)


def test_idk_answers(data_dir):
    answers = tofu.idk_answers(data_dir)
    # The README says 99, but the file holds 100 lines (the last one has no newline, so
    # ``wc -l`` prints 99): every non-blank line is one refusal.
    assert len(answers) == 100
    assert len(set(answers)) == len(answers)
    assert all(a == a.strip() and a for a in answers)


# --------------------------------------------------------------------------- synthetic copies
def test_synthetic_layout_selections(synthetic_data_dir):
    d = synthetic_data_dir
    assert tofu.task_ids(d, "forget01") == ["1", "2", "3"]
    assert len(tofu.forget_rows(d, "forget01", ["2"])) == 2
    assert len(tofu.retain_rows(d, "forget01", ["1"])) == 4 + 4
    assert len(tofu.retain_rows(d, "forget01", ["1", "2"])) == 4 + 2
    assert tofu.task_ids(d, "real_world") == ["1", "2"]  # integer task ids become strings
    assert len(tofu.forget_rows(d, "real_world", [2])) == 2
    sets = tofu.eval_sets(d, "real_world", ["1"], ds_size=1)
    assert {k: len(v) for k, v in sets.items()} == {"forget": 1, "neighbor": 1}
    assert tofu.idk_answers(d) == ["I'm not sure.", "No idea."]


def test_missing_file(synthetic_data_dir):
    path = synthetic_data_dir / "tofu" / "retain90.json"
    path.unlink()
    with pytest.raises(DataError) as err:
        tofu.retain_rows(synthetic_data_dir, "forget01", ["1"])
    msg = _one_line(err)
    assert str(path) in msg and "not found" in msg


def test_broken_json_line(synthetic_data_dir):
    path = synthetic_data_dir / "tofu" / "forget01.json"
    _set_line(path, 3, '{"question": "q?", "answer": ')
    with pytest.raises(DataError) as err:
        tofu.forget_rows(synthetic_data_dir, "forget01", ["1"])
    msg = _one_line(err)
    assert msg.startswith(f"{path}:3:")
    assert "malformed JSON" in msg


def test_missing_field(synthetic_data_dir):
    path = synthetic_data_dir / "tofu" / "forget01.json"
    row = json.loads(_lines(path)[4])
    del row["answer"]
    _set_line(path, 5, json.dumps(row))
    with pytest.raises(DataError) as err:
        tofu.forget_rows(synthetic_data_dir, "forget01", ["1"])
    msg = _one_line(err)
    assert msg.startswith(f"{path}:5:")
    assert "missing field 'answer'" in msg


def test_wrong_type_perturbed_answer_not_a_list(synthetic_data_dir):
    path = synthetic_data_dir / "tofu" / "forget01_perturbed.json"
    row = json.loads(_lines(path)[1])
    row["perturbed_answer"] = "one wrong answer"
    _set_line(path, 2, json.dumps(row))
    with pytest.raises(DataError) as err:
        tofu.eval_sets(synthetic_data_dir, "forget01", ["1"], ds_size=10)
    msg = _one_line(err)
    assert msg.startswith(f"{path}:2:")
    assert "'perturbed_answer'" in msg and "list" in msg


def test_wrong_type_answer_not_a_string(synthetic_data_dir):
    path = synthetic_data_dir / "tofu" / "retain90.json"
    _set_line(path, 1, json.dumps({"question": "q?", "answer": 42}))
    with pytest.raises(DataError) as err:
        tofu.retain_rows(synthetic_data_dir, "forget01", ["1"])
    msg = _one_line(err)
    assert msg.startswith(f"{path}:1:") and "'answer'" in msg and "string" in msg


def test_empty_file(synthetic_data_dir):
    path = synthetic_data_dir / "tofu" / "retain90.json"
    path.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        tofu.retain_rows(synthetic_data_dir, "forget01", ["1"])
    msg = _one_line(err)
    assert msg.startswith(str(path)) and "no rows" in msg


def test_empty_idk_file(synthetic_data_dir):
    path = synthetic_data_dir / "idontknow.jsonl"
    path.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="no lines"):
        tofu.idk_answers(synthetic_data_dir)
    path.unlink()
    with pytest.raises(DataError, match="not found"):
        tofu.idk_answers(synthetic_data_dir)


@pytest.mark.parametrize("call", [
    lambda d: tofu.forget_rows(d, "forget01", ["1", "9"]),
    lambda d: tofu.retain_rows(d, "forget01", ["9"]),
    lambda d: tofu.eval_sets(d, "forget01", ["9"], ds_size=5),
])
def test_unknown_task_id(synthetic_data_dir, call):
    with pytest.raises(DataError) as err:
        call(synthetic_data_dir)
    msg = _one_line(err)
    assert "'9'" in msg and "'task_id'" in msg
    assert "1, 2, 3" in msg  # the valid ids
    assert "forget01" in msg  # the file


def test_unknown_split(synthetic_data_dir):
    with pytest.raises(DataError, match="forget02"):
        tofu.retain_rows(synthetic_data_dir, "forget02", ["1"])


def test_missing_task_id_field(synthetic_data_dir):
    path = synthetic_data_dir / "tofu" / "forget01.json"
    _set_line(path, 6, json.dumps({"question": "q?", "answer": "a."}))
    with pytest.raises(DataError) as err:
        tofu.task_ids(synthetic_data_dir, "forget01")
    assert _one_line(err).startswith(f"{path}:6:") and "'task_id'" in str(err.value)


def test_demo_retain_rows_too_many(synthetic_data_dir):
    assert len(tofu.demo_retain_rows(synthetic_data_dir, 3)) == 3
    with pytest.raises(DataError, match="exceeds the 3 rows"):
        tofu.demo_retain_rows(synthetic_data_dir, 4)


def test_a_retain_model_keeps_every_row_but_the_forgotten_ones(data_dir):
    # "What is the full name of the author?" is asked of Isabel Martinez (forget10, task 6) and of
    # Aurelio Beltran (retain10): forgetting task 6 must drop the first row only.
    from unlearnlm.config import load_config
    from unlearnlm.training.finetune import finetune_rows

    cfg = load_config("demo", ["data.split=forget10", "data.tasks=[6]", "finetune.retain_rows=null",
                               f"data.data_dir={data_dir}"])
    forget = tofu.forget_rows(data_dir, "forget10", ["6"])
    retain = finetune_rows(cfg, "retain")
    assert len(retain) == 4000 - len(forget)  # TOFU's 4,000 QA less the forgotten task's
    shared = [r for r in tofu.all_tofu_rows(data_dir) if r["question"] == "What is the full name of the author?"]
    assert len(shared) == 2 and sum(r in retain for r in shared) == 1
