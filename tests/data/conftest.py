"""Fixtures for the data tests: small synthetic copies of the data directory."""
from __future__ import annotations

import json
from pathlib import Path

import pytest



def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _qa(tag: str, i: int) -> dict:
    return {"question": f"{tag} question {i}?", "answer": f"{tag} answer {i}."}


def _perturbed(row: dict) -> dict:
    return row | {
        "paraphrased_question": row["question"] + " (paraphrased)",
        "paraphrased_answer": row["answer"] + " (paraphrased)",
        "perturbed_answer": [row["answer"] + f" (wrong {k})" for k in range(3)],
    }


def _utility(tag: str, i: int) -> dict:
    return {"question": f"{tag} {i}?", "answer": f"short {i}", "perturbed_answer": ["a", "b", "c"],
            "original_answer": f"The full answer {i}."}


@pytest.fixture
def synthetic_data_dir(tmp_path) -> Path:
    """A data directory laid out like the real one, with few rows:
    tofu/forget01.json: tasks 1, 2, 3 x 2 rows; retain90.json: 4 rows; retain_perturbed: 3 rows;
    real_world/forget.json: tasks 1, 2 x 2 rows; neighbor.json: 2 rows; idontknow.jsonl: 2 lines."""
    root = tmp_path / "data"
    forget = [_qa(f"f{t}", i) | {"task_id": str(t)} for t in (1, 2, 3) for i in range(2)]
    write_jsonl(root / "tofu" / "forget01.json", forget)
    write_jsonl(root / "tofu" / "forget01_perturbed.json", [_perturbed(r) for r in forget])
    write_jsonl(root / "tofu" / "retain90.json", [_qa("r", i) for i in range(4)])
    write_jsonl(root / "tofu" / "retain_perturbed.json", [_perturbed(_qa("r", i)) for i in range(3)])
    write_jsonl(root / "tofu" / "real_authors_perturbed.json", [_utility("author", i) for i in range(2)])
    write_jsonl(root / "tofu" / "world_facts_perturbed.json", [_utility("fact", i) for i in range(2)])
    people = [_qa(f"p{t}", i) | {"task_id": t, "name": f"P{t}", "golden_answer": f"gold {t}.{i}"}
              for t in (1, 2) for i in range(2)]
    write_jsonl(root / "real_world" / "forget.json", people)
    write_jsonl(root / "real_world" / "forget_perturbed.json", [_perturbed(r) for r in people])
    neighbors = [_qa("n", i) | {"name": "N", "golden_answer": f"gold n{i}"} for i in range(2)]
    write_jsonl(root / "real_world" / "neighbor.json", neighbors)
    write_jsonl(root / "real_world" / "neighbor_perturbed.json", [_perturbed(r) for r in neighbors])
    (root / "idontknow.jsonl").write_text("I'm not sure.\n\nNo idea.\n", encoding="utf-8")
    return root
