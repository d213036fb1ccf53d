"""Unlearning-step MFU of a random-initialised ~1B Llama in bf16 on a CUDA device.

    python benchmarks/gpu_mfu.py [--steps 10] [--batch 8] [--seq 512] [--peak-n 8192]
    python benchmarks/gpu_mfu.py --tiny      # CPU smoke test of the code path (not a measurement)

Without a CUDA device it prints ``SUMMARY gpu_mfu: no CUDA device: skipped`` and exits 0.

Model: LlamaConfig(hidden 2048, 16 layers, 32 heads (no GQA), intermediate 5632, vocab 32000,
untied lm_head), random weights, fp32 master weights with bf16 autocast as the project's
Trainer runs with bf16=true, fused AdamW. Step: the project's ME+GD loss (LossContext +
get_method) on a forget part (every token an ME target, as ME with mask_question=false) and
a retain part (first quarter of each sequence masked as the question), each ``--batch``
sequences of ``--seq`` random tokens (no padding), forward + loss + backward + AdamW step.

MFU = model FLOP/s / peak bf16 matmul FLOP/s, the peak measured the same way as on the CPU
(repeated square torch.mm, here ``--peak-n`` = 8192 so the GPU is saturated) before and
after the timed steps. Model FLOPs = 6 x N_matmul x tokens + 12 x layers x hidden x T^2 per
sequence (see benchmarks/mfu.py; here the lm_head is untied and counted the same way).
No separate goal was set for the GPU; the summary uses the CPU benchmark's 50%.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

GOAL = 0.50
FULL = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=32,
            intermediate_size=5632, vocab_size=32000, max_position_embeddings=4096)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            intermediate_size=128, vocab_size=1000, max_position_embeddings=128)


def _arguments():
    p = common.parser(__doc__.split("\n")[0], steps=10)
    p.add_argument("--batch", type=int, default=8, help="sequences per part (default 8)")
    p.add_argument("--seq", type=int, default=512, help="tokens per sequence (default 512)")
    p.add_argument("--peak-n", type=int, default=8192, help="square matmul size for the peak (default 8192)")
    p.add_argument("--tiny", action="store_true", help="tiny model on CPU: checks the code path, measures nothing")
    p.add_argument("--chunk", type=int, default=0, help="unlearn.loss_chunk_size of the loss (0: full logits)")
    return p.parse_args()


def _random_batch(config, batch: int, seq: int, device: str) -> dict:
    """ME+GD's two parts of random tokens; the retain part's first quarter is the (unscored) question."""
    import torch

    from unlearnlm.data.prompts import IGNORE

    def part(question_tokens: int) -> dict:
        ids = torch.randint(3, config.vocab_size, (batch, seq), device=device)
        labels = ids.clone()
        labels[:, :question_tokens] = IGNORE
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    return {"forget": part(0), "retain": part(seq // 4)}


def _training_step(model, batch: dict, device: str, chunk: int):
    """ME+GD loss under bf16 autocast, backward, AdamW (fused on CUDA); returns the loss."""
    import torch

    from unlearnlm.methods import LossConfig, LossContext, get_method

    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01,
                            **({"fused": True} if device == "cuda" else {}))
    method, cfg = get_method("ME+GD"), LossConfig()

    def step():
        with torch.autocast(device, dtype=torch.bfloat16):
            loss, _ = method.loss(LossContext(model, batch, None, chunk_size=chunk), cfg, 1.0, 1.0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def _timed(step, steps: int, device: str) -> float:
    """Seconds for ``steps`` steps after 3 warm-up steps (CUDA synchronised)."""
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        step()
    sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync()
    if not torch.isfinite(loss):
        raise RuntimeError("non-finite loss")
    return time.perf_counter() - t


def main() -> int:
    args = _arguments()

    import torch

    if args.tiny:
        device, shape_kwargs = "cpu", TINY
        args.batch, args.seq, args.steps, args.peak_n = 2, 32, 2, 256
        common.set_threads(args.threads)
    elif not torch.cuda.is_available():
        print("gpu_mfu: torch.cuda.is_available() is False on this machine")
        print("SUMMARY gpu_mfu: no CUDA device: skipped", flush=True)
        return 0
    else:
        device, shape_kwargs = "cuda", FULL
        if args.quick:
            args.steps = 3
    start = common.header("gpu_mfu" + (" (tiny CPU smoke test)" if args.tiny else ""))
    if device == "cuda":
        print(f"device: {torch.cuda.get_device_name(0)}, bf16 supported {torch.cuda.is_bf16_supported()}")
        torch.backends.cuda.matmul.allow_tf32 = True

    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(tie_word_embeddings=False, **shape_kwargs)
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config).to(device).train()
    shape = common.model_shape(config)
    n_params = sum(p.numel() for p in model.parameters())
    B, T = args.batch, args.seq
    step = _training_step(model, _random_batch(config, B, T, device), device, args.chunk)
    print(f"model: {n_params / 1e6:.0f}M parameters, matmul N = {shape['matmul_params'] / 1e6:.0f}M "
          f"(blocks {shape['block_matmul_params'] / 1e6:.0f}M + lm_head {shape['lm_head_params'] / 1e6:.0f}M); "
          f"ME+GD, 2 parts x {B} x {T} tokens per step; fp32 weights, bf16 autocast", flush=True)
    peak_before = common.matmul_peak(torch.bfloat16, n=args.peak_n, device=device)
    seconds = _timed(step, args.steps, device)
    peak_after = common.matmul_peak(torch.bfloat16, n=args.peak_n, device=device)
    peak = (peak_before + peak_after) / 2
    achieved = args.steps * common.model_flops(shape, [T] * (2 * B)) / seconds
    mfu = achieved / peak
    print(f"peak bf16 matmul ({args.peak_n}^3 torch.mm): before {peak_before / 1e12:.1f}, after "
          f"{peak_after / 1e12:.1f} TFLOP/s")
    print(f"{args.steps} steps in {seconds:.3f}s ({seconds / args.steps * 1000:.1f} ms/step, "
          f"{2 * B * T * args.steps / seconds:.0f} tokens/s): {achieved / 1e12:.2f} model TFLOP/s")
    if device == "cuda":
        print(f"max CUDA memory allocated during the timed steps: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    common.footer(start)
    if args.tiny:
        print(f"SUMMARY gpu_mfu: tiny CPU smoke test ran (MFU {mfu * 100:.1f}%, not a measurement)", flush=True)
        return 0
    common.summary("gpu_mfu", f"ME+GD step MFU, ~1B Llama bf16 ({achieved / 1e12:.1f} / {peak / 1e12:.1f} TFLOP/s)",
                   mfu * 100, GOAL * 100, unit="%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
