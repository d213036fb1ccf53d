"""Training MFU of an ME+GD unlearning step on SmolLM2-135M (CPU).

    python benchmarks/mfu.py [--steps 6] [--quick] [--threads auto] [--no-profile]

MFU = achieved model FLOP/s / peak matmul FLOP/s, both measured here in the same run:

  peak      sustained rate of 2048x2048 @ 2048x2048 torch.mm in bf16 (the dtype bf16
            autocast computes the model's matmuls in), measured for ~1.5 s before the first
            and after every timed training step (so load changes hit both sides); MFU uses
            the mean of these. fp32 is measured once for reference.
  achieved  model FLOPs of the timed steps / their wall time. Model FLOPs per step =
            6 x N x real tokens + 12 x layers x (heads x head_dim) x T^2 per sequence, where
            N = all matmul weights: the 7 matrices of each decoder block plus the lm_head
            (tied to the embeddings, but still a 576 x 49152 matmul per token; the embedding
            lookup and norms are not counted), T = the sequence's real (non-padding) length,
            attention counted without halving for the causal mask (PaLM convention).
            Padding tokens the batch computes anyway are not model FLOPs; the hardware FLOPs
            including them are printed too.
  step      one full optimisation step as the project runs it: TOFU forget01 task 1,
            batch 4, this project's length-grouped dynamic batches (forget QA with question
            tokens as ME targets + a retain QA), bf16 autocast as use_bf16("auto"), the
            ME+GD loss, backward, AdamW step.

When MFU is below the goal, one more step is run under torch.profiler and the top ops by
self CPU time, and the share of time per phase, are printed.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

GOAL = 0.50
BATCH = 4
METHOD = "ME+GD"
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm",
              "mkldnn", "aten::_scaled_dot_product", "aten::scaled_dot_product")


def _timed_batches(tok, fmt, steps: int):
    """This project's length-grouped ME+GD batches of TOFU forget01 task 1: a warm-up batch and
    ``steps`` timed ones spread over the epoch."""
    from unlearnlm.config.schema import UnlearnConfig
    from unlearnlm.data.collate import length_grouped_order
    from unlearnlm.methods import get_method
    from unlearnlm.methods.settings import resolve_method
    from unlearnlm.training.unlearn_data import PartsCollator, UnlearnDataset

    forget, retain, idk = common.tofu_task1()
    mask_question = resolve_method(UnlearnConfig(), METHOD).settings.mask_question  # ME: question tokens too
    dataset = UnlearnDataset(forget, retain, idk, tok, fmt, get_method(METHOD).parts, mask_question, 512, seed=0)
    order = length_grouped_order(dataset.lengths(), BATCH, seed=0)
    collate = PartsCollator(tok.pad_token_id)
    batches = [collate([dataset[i] for i in order[s : s + BATCH]]) for s in range(0, len(order), BATCH)]
    pick = sorted({round(i * len(batches) / steps) for i in range(steps)}) if steps < len(batches) else range(steps)
    return batches[-1], [batches[i % len(batches)] for i in pick]


def _training_step(model, bf16: bool, chunk: int):
    """One optimisation step as the project runs it: ME+GD loss, backward, AdamW; returns the loss."""
    import torch
    from torch.profiler import record_function

    from unlearnlm.methods import LossConfig, LossContext, get_method

    method, cfg = get_method(METHOD), LossConfig()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)

    def step(batch):
        with record_function("## forward + loss"), common.autocast(bf16):
            loss, _ = method.loss(LossContext(model, batch, None, chunk_size=chunk), cfg, 1.0, 1.0)
        with record_function("## backward"):
            loss.backward()
        with record_function("## optimizer"):
            opt.step()
            opt.zero_grad(set_to_none=True)
        return loss.detach().item()

    return step


def _time_steps(step, timed: list, shape: dict, peak_dtype, peaks: list) -> dict:
    """Time each step; the matmul peak is measured again after each (appended to ``peaks``)."""
    totals = {"flops": 0.0, "hw_flops": 0.0, "real_tokens": 0, "seconds": 0.0}
    for i, batch in enumerate(timed):
        lens = [int(n) for part in batch.values() for n in part["attention_mask"].sum(1)]
        widths = [part["input_ids"].shape[1] for part in batch.values() for _ in range(part["input_ids"].shape[0])]
        t = time.perf_counter()
        step(batch)
        dt = time.perf_counter() - t
        f = common.model_flops(shape, lens)
        totals["flops"] += f
        totals["hw_flops"] += common.model_flops(shape, widths)
        totals["real_tokens"] += sum(lens)
        totals["seconds"] += dt
        peaks.append(common.matmul_peak(peak_dtype, seconds=1.5))
        print(f"  step {i + 1}: {dt:.2f}s, {sum(lens)} real tokens of {sum(widths)}, "
              f"{f / 1e12:.3f} model TFLOP -> {f / dt / 1e9:.1f} GFLOP/s; peak after it {peaks[-1] / 1e9:.1f} GFLOP/s",
              flush=True)
    return totals


def main() -> int:
    p = common.parser(__doc__.split("\n")[0], steps=6)
    p.add_argument("--no-profile", action="store_true", help="skip the profile even when the goal is missed")
    p.add_argument("--chunk", type=int, default=0, help="unlearn.loss_chunk_size of the loss (0: full logits)")
    args = p.parse_args()
    threads = common.set_threads(args.threads)
    start = common.header("mfu", threads)

    import torch

    from unlearnlm.models.loading import use_bf16

    bf16 = use_bf16("auto")
    steps = 2 if args.quick else max(1, args.steps)
    path, tok, fmt, model = common.smollm2()
    model.train()
    shape = common.model_shape(model.config)
    warmup, timed = _timed_batches(tok, fmt, steps)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model {path}: {n_params / 1e6:.1f}M parameters (tied embeddings); matmul parameters N = "
          f"{shape['block_matmul_params'] / 1e6:.2f}M in blocks + {shape['lm_head_params'] / 1e6:.2f}M lm_head = "
          f"{shape['matmul_params'] / 1e6:.2f}M; layers {shape['layers']}, hidden {shape['hidden']}, "
          f"heads {shape['heads']} x {shape['head_dim']}, vocab {shape['vocab']}")
    print(f"{METHOD}, batch {BATCH}, bf16 autocast {bf16}, {steps} timed steps after 1 warm-up", flush=True)
    step = _training_step(model, bf16, args.chunk)
    peak_dtype = torch.bfloat16 if bf16 else torch.float32
    fp32_peak = common.matmul_peak(torch.float32) if bf16 else None
    peaks = [common.matmul_peak(peak_dtype, seconds=1.5)]
    print(f"peak matmul (2048^3 torch.mm) before: {'bf16' if bf16 else 'fp32'} {peaks[0] / 1e9:.1f} GFLOP/s"
          + (f", fp32 {fp32_peak / 1e9:.1f} GFLOP/s" if bf16 else ""), flush=True)
    step(warmup)
    totals = _time_steps(step, timed, shape, peak_dtype, peaks)
    peak = sum(peaks) / len(peaks)
    seconds = totals["seconds"]
    achieved = totals["flops"] / seconds
    mfu = achieved / peak
    print(f"peak matmul: mean {peak / 1e9:.1f} GFLOP/s over {len(peaks)} measurements "
          f"(min {min(peaks) / 1e9:.1f}, max {max(peaks) / 1e9:.1f})")
    print(f"\nachieved: {totals['flops'] / 1e12:.3f} model TFLOP in {seconds:.2f}s = {achieved / 1e9:.1f} GFLOP/s "
          f"({totals['real_tokens'] / seconds:.0f} real tokens/s); hardware FLOPs incl. padding "
          f"{totals['hw_flops'] / seconds / 1e9:.1f} GFLOP/s")
    print(f"MFU vs {'bf16' if bf16 else 'fp32'} matmul peak: {mfu * 100:.1f}%"
          + (f"; vs the fp32 matmul peak ({fp32_peak / 1e9:.1f} GFLOP/s, for reference only: the step's "
                 f"matmuls run in bf16): {achieved / fp32_peak * 100:.1f}%" if bf16 else ""))
    if mfu < GOAL and not args.no_profile:
        profile(step, timed[0])
    common.footer(start)
    common.summary("mfu", f"{METHOD} step MFU on SmolLM2-135M ({achieved / 1e9:.1f} model GFLOP/s / "
                          f"{peak / 1e9:.1f} GFLOP/s {'bf16' if bf16 else 'fp32'} matmul peak)",
                   mfu * 100, GOAL * 100, unit="%")
    return 0


def profile(step, batch) -> None:
    """One step under torch.profiler: top ops by self CPU time, phase shares, matmul share."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    print("\n-- profile of one step (torch.profiler, CPU)", flush=True)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        step(batch)
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40))
    total_self = sum(e.self_cpu_time_total for e in events if not e.key.startswith("## "))
    phases = {e.key: e.cpu_time_total for e in events if e.key.startswith("## ")}
    whole = sum(phases.values()) or 1
    print("phase shares of the step: " + ", ".join(f"{k[3:]} {v / whole * 100:.0f}%" for k, v in phases.items()))
    mm = sum(e.self_cpu_time_total for e in events if any(e.key.startswith(m) for m in MATMUL_OPS))
    print(f"matmul-type ops (mm/addmm/bmm/linear/mkldnn/sdpa): {mm / max(total_self, 1) * 100:.0f}% of self CPU time")
    top = sorted((e for e in events if not e.key.startswith("## ")), key=lambda e: -e.self_cpu_time_total)[:8]
    print("top self CPU: " + "; ".join(f"{e.key} {e.self_cpu_time_total / max(total_self, 1) * 100:.0f}%" for e in top))


if __name__ == "__main__":
    sys.exit(main())
