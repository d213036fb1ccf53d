"""The target's mean NLL on an experiment's unlearning retain set, to set PDU's ``pdu_eps``
("a little above the target's retain loss"; experiments/grid.yaml uses 1.1x this value).

    python experiments/retain_nll.py --preset experiments/grid.yaml
"""
from __future__ import annotations

import argparse
import sys

import torch


def main(argv: list[str]) -> int:
    from unlearnlm.config import load_config
    from unlearnlm.data.collate import QACollator
    from unlearnlm.data.prompts import PromptFormat, encode_qa
    from unlearnlm.methods import losses
    from unlearnlm.models.loading import load_model, load_tokenizer
    from unlearnlm.training.finetune import finetune_models
    from unlearnlm.training.unlearn import unlearning_rows

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="experiments/grid.yaml")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv[1:])
    cfg = load_config(args.preset, args.overrides)
    target = finetune_models(cfg, which=("target",))["target"]  # cached: found, not retrained
    tokenizer = load_tokenizer(str(target))
    fmt = PromptFormat.for_tokenizer(tokenizer, cfg.model)
    _, retain = unlearning_rows(cfg, cfg.data.tasks, cfg.data.tasks)
    features = [encode_qa(tokenizer, fmt, r["question"], r["answer"], True, 512) for r in retain]
    model = load_model(str(target)).eval()
    nll_sum, n_tokens = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(features), 16):
            batch = QACollator(tokenizer.pad_token_id)(features[i:i + 16])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            nll, mask = losses.token_nll(logits, batch["labels"])
            nll_sum += nll.sum().item()
            n_tokens += int(mask.sum())
    print(f"target {target}: mean retain NLL {nll_sum / n_tokens:.4f} over {len(retain)} QA, {n_tokens} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
