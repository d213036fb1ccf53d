"""``unlearnlm push MODEL_DIR --repo-id ID``: upload a finished model folder to a hub.

For users with a hub token. The folder must be one unlearnlm finished (its manifest marks it);
its ``README.md`` model card is written first when missing (``reports/model_card.py``). Cached
evaluations and per-epoch models stay local. Tests replace ``huggingface_hub.HfApi`` with a fake.
"""
from __future__ import annotations

import os
from pathlib import Path

from unlearnlm.errors import ModelError
from unlearnlm.training.layout import ModelFolder

PUSH_IGNORE = ["evaluations/*", "epochs/*", "*.tmp"]


def push_model(model_dir: str | os.PathLike, repo_id: str, private: bool = False) -> str:
    """Create ``repo_id`` (if needed) and upload the folder; returns the commit URL."""
    import huggingface_hub

    from unlearnlm.reports.model_card import CARD, write_model_card

    folder = ModelFolder(Path(model_dir))
    if not folder.is_done:
        raise ModelError(f"push: {model_dir} is not a finished unlearnlm model folder (no {folder.manifest.name})")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelError("push: HF_HUB_OFFLINE=1 forbids the hub")
    if huggingface_hub.get_token() is None:
        raise ModelError("push: no Hugging Face token (set HF_TOKEN or run `hf auth login`)")
    if not (folder.path / CARD).is_file():
        write_model_card(folder.path)
    api = huggingface_hub.HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(folder_path=str(folder.path), repo_id=repo_id, repo_type="model",
                                   ignore_patterns=PUSH_IGNORE, commit_message=f"Upload {folder.path.name} (unlearnlm)")
    except Exception as e:  # auth, network, permissions: one line, whichever it is
        raise ModelError(f"push {repo_id}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    return str(getattr(commit, "commit_url", commit))
