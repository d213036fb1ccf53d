"""Where an ME+GD step's memory goes: resident memory after each phase, and the ops that allocate most.

    python benchmarks/memory_profile.py [--model gemma3-270m] [--chunk 32] [--checkpointing] [--fused-adamw] [--threads 1]

Runs ME+GD steps by hand (the step of benchmarks/mfu.py: TOFU forget01 task 1, batch 4, AdamW)
and prints VmRSS and VmHWM after the forward + loss, the backward, the optimizer step and
zero_grad of the first three steps; then one more step under torch.profiler with
``profile_memory=True``, its ops ranked by the memory they allocate (grouped by input shape).
A diagnostic, not a goal: docs/benchmarks.md ("memory with the chunked loss") reads it.
"""
from __future__ import annotations

import gc
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def main() -> int:
    p = common.parser(__doc__.split("\n")[0])
    p.add_argument("--model", default="gemma3-270m", help="offline alias (default gemma3-270m)")
    p.add_argument("--chunk", type=int, default=32, help="unlearn.loss_chunk_size (0: full logits)")
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing")
    p.add_argument("--fused-adamw", action="store_true", help="AdamW(fused=True): no per-tensor temporaries")
    args = p.parse_args()
    threads = common.set_threads(args.threads)
    start = common.header("memory_profile", threads)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from unlearnlm.config.schema import UnlearnConfig
    from unlearnlm.data.collate import length_grouped_order
    from unlearnlm.data.prompts import PromptFormat
    from unlearnlm.methods import LossConfig, LossContext, get_method
    from unlearnlm.methods.settings import resolve_method
    from unlearnlm.models.loading import load_model, load_tokenizer
    from unlearnlm.models.offline import prepare_offline_model
    from unlearnlm.training.unlearn_data import PartsCollator, UnlearnDataset

    print(f"after imports: peak {common.peak_rss_mib():.0f} MiB")
    path = str(prepare_offline_model(args.model))
    tok, model = load_tokenizer(path), load_model(path)
    model.train()
    if args.checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    n = sum(p.numel() for p in model.parameters())
    print(f"{args.model}: {n / 1e6:.1f}M parameters, {n * 4 / 2**20:.0f} MiB in fp32; chunk {args.chunk}, "
          f"gradient checkpointing {args.checkpointing}, fused AdamW {args.fused_adamw}; loaded: RSS {common.current_rss_mib():.0f} MiB")
    forget, retain, idk = common.tofu_task1()
    method = get_method("ME+GD")
    settings = resolve_method(UnlearnConfig(), "ME+GD").settings
    dataset = UnlearnDataset(forget, retain, idk, tok, PromptFormat.for_tokenizer(tok), method.parts,
                             settings.mask_question, 512, seed=0)
    order = length_grouped_order(dataset.lengths(), 4, seed=0)
    collate = PartsCollator(tok.pad_token_id)
    batches = [collate([dataset[i] for i in order[s : s + 4]]) for s in range(0, len(order), 4)]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=args.fused_adamw or None)
    cfg = LossConfig()

    def mark(step: int, phase: str) -> None:
        print(f"step {step} after {phase:14s} RSS {common.current_rss_mib():6.0f} MiB, peak {common.peak_rss_mib():6.0f} MiB",
              flush=True)

    def step(batch, i: int | None = None) -> None:
        loss, _ = method.loss(LossContext(model, batch, None, chunk_size=args.chunk), cfg, settings.forget_coeff,
                              settings.reg_coeff)
        i is None or mark(i, "forward + loss")
        loss.backward()
        i is None or mark(i, "backward")
        opt.step()
        i is None or mark(i, "optimizer step")
        opt.zero_grad(set_to_none=True)
        gc.collect()
        i is None or mark(i, "zero_grad")

    for i, batch in enumerate(batches[:3]):
        step(batch, i + 1)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True) as prof:
        step(batches[3])
    print(prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_memory_usage", row_limit=18, max_name_column_width=40, max_shapes_column_width=60))
    common.footer(start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
