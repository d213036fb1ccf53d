"""Model cards (README.md in each saved model folder) and `unlearnlm push` against a fake hub client."""
from __future__ import annotations

import json

import huggingface_hub
import pytest

from unlearnlm.cli import main
from unlearnlm.errors import ModelError
from unlearnlm.models.push import PUSH_IGNORE, push_model
from unlearnlm.reports.model_card import model_card, write_model_card

MANIFEST = {
    "kind": "unlearned", "method": "ME+GD", "base_model": "/cache/finetuned/target", "ref_model": "/cache/t",
    "forget_tasks": ["1"], "split": "forget01", "n_forget": 40, "n_retain": 60,
    "settings": {"forget_coeff": 0.1, "reg_coeff": 1.0, "rmu_layer": None,
                 "train": {"lr": 1e-4, "epochs": 3.0}, "per_method": {}},
    "environment": {"packages": {"unlearnlm": "0.1.0"}},
}
SUMMARY = {"aggregates": {"model_utility": 0.5301, "forget_efficacy": 0.6759, "forget_quality": None,
                          "lm_eval:mmlu_offline": 0.2167, "lm_eval:mmlu_offline:stderr": 0.0238},
           "sets": {"forget": {"rouge": 0.25, "probability": 0.125}, "retain": {"rouge": 0.875, "probability": 0.5}}}
JUDGES = {"nli": "offline-minilm-nli:abc", "nli_heldout_accuracy": 0.919, "embedder": "all-MiniLM-L6-v2"}


def test_card_says_what_the_model_is_how_it_was_made_and_how_it_scored():
    card = model_card(MANIFEST, "ME+GD", SUMMARY, JUDGES)
    front = card.split("---")[1]
    assert "library_name: transformers" in front and "- ME+GD" in front and "- locuslab/TOFU" in front
    assert "base_model" not in front  # a local path is not a hub id
    assert "Unlearned with **ME+GD** from `/cache/finetuned/target`, forgetting forget01 task 1 (40 forget QA" in card
    assert "| forget_coeff | 0.1 |" in card and "| lr | 0.0001 |" in card and "rmu_layer" not in card
    assert "| Model Utility (MU) | 0.530 |" in card and "| Forget Efficacy (FE) | 0.676 |" in card
    assert "Forget Quality" not in card  # not measured: not shown
    assert "| lm-eval mmlu_offline | 0.217 +- 0.024 |" in card and "stderr" not in card
    assert "| forget | 0.250 | 0.125 |" in card and "| retain | 0.875 | 0.500 |" in card
    assert "offline-minilm-nli:abc` (held-out accuracy 0.919)" in card and "unlearnlm/) 0.1.0." in card


def test_card_names_a_hub_base_model_and_says_when_not_evaluated():
    card = model_card(MANIFEST | {"base_model": "open-unlearning/tofu_Llama-3.2-1B-Instruct_full"}, "m")
    assert "base_model: open-unlearning/tofu_Llama-3.2-1B-Instruct_full" in card.split("---")[1]
    assert "Not evaluated yet" in card


def test_no_card_is_written_into_a_folder_unlearnlm_did_not_make(tmp_path):
    assert write_model_card(tmp_path) is None and not (tmp_path / "README.md").exists()


class FakeApi:
    calls: list = []

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw))
        return type("Commit", (), {"commit_url": f"https://hub.example/{kw['repo_id']}/commit/1"})()


@pytest.fixture
def finished(tmp_path):
    folder = tmp_path / "ME+GD"
    folder.mkdir()
    (folder / "unlearnlm_manifest.json").write_text(json.dumps(MANIFEST))
    return folder


def test_push_uploads_the_folder_with_its_card(finished, monkeypatch, capsys):
    FakeApi.calls = []
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_fake")
    assert main(["push", str(finished), "--repo-id", "me/tiny", "--private"]) == 0
    assert FakeApi.calls[0] == ("create_repo", "me/tiny", {"private": True, "exist_ok": True, "repo_type": "model"})
    upload = FakeApi.calls[1][1]
    assert upload["folder_path"] == str(finished) and upload["ignore_patterns"] == PUSH_IGNORE
    assert (finished / "README.md").read_text().startswith("---\nlibrary_name: transformers")  # card first
    assert "https://hub.example/me/tiny/commit/1" in capsys.readouterr().out


def test_push_refuses_without_token_unfinished_folders_and_reports_hub_errors(finished, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(ModelError, match=r"^push: no Hugging Face token"):
        push_model(finished, "me/tiny")
    with pytest.raises(ModelError, match=r"is not a finished unlearnlm model folder"):
        push_model(tmp_path, "me/tiny")

    class Denied(FakeApi):
        def create_repo(self, repo_id, **kw):
            raise PermissionError("403 Forbidden: you cannot write to me/tiny\ndetails")

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_fake")
    monkeypatch.setattr(huggingface_hub, "HfApi", Denied)
    with pytest.raises(ModelError, match=r"^push me/tiny: 403 Forbidden: you cannot write to me/tiny$"):
        push_model(finished, "me/tiny")
