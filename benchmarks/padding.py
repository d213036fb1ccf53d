"""Unlearning steps per second: dynamic length-grouped batches vs padding everything to 500.

    python benchmarks/padding.py [--steps 2] [--dynamic-batches 4] [--quick] [--threads auto]

SmolLM2-135M, TOFU forget01 task 1 (40 forget QA) with its retain pairs, batch 4, bf16
autocast as ``use_bf16("auto")``, one full optimisation step each (forward of every part,
the method's loss, backward, AdamW step), for ME+GD and NPO+KL.

  dynamic  this project: UnlearnDataset + length_grouped_order + PartsCollator (each part
           padded to its longest sequence in the batch); ``--dynamic-batches`` batches,
           evenly spaced over the epoch's 10, are timed (all of them with 10).
  padded   the reference code's batches: every example of every part padded to 500 tokens
           (labels -100 and attention mask 0 over padding, so the loss is identical; the
           reference ME with mask=false also averaged over padding, not reproduced here).
           Every padded step has the same shape, so ``--steps`` of them are timed.

``mask_question`` is the documented default (ME: false, every other forget loss: true).
Padded and dynamic steps are interleaved (one padded step, then a share of the dynamic
batches) so a change in machine load hits both. The figure is the ratio of steps/s.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

PAD_TO = 500
BATCH = 4
METHODS = ("ME+GD", "NPO+KL")
GOAL = 4.0


def pad_part(part: dict, width: int, pad_id: int) -> dict:
    import torch

    from unlearnlm.data.prompts import IGNORE

    extra = width - part["input_ids"].shape[1]
    if extra < 0:
        raise ValueError(f"a sequence is longer than {width} tokens")
    b = part["input_ids"].shape[0]
    return {
        "input_ids": torch.cat([part["input_ids"], torch.full((b, extra), pad_id, dtype=torch.long)], 1),
        "attention_mask": torch.cat([part["attention_mask"], torch.zeros((b, extra), dtype=torch.long)], 1),
        "labels": torch.cat([part["labels"], torch.full((b, extra), IGNORE, dtype=torch.long)], 1),
    }


def _batches(method, name: str, tok, fmt, rows, n_dynamic: int) -> tuple[bool, list, list, list]:
    """(mask_question, the epoch's dynamic batches, the same padded to PAD_TO, the timed dynamic ones)."""
    from unlearnlm.config.schema import UnlearnConfig
    from unlearnlm.data.collate import length_grouped_order
    from unlearnlm.methods.settings import resolve_method
    from unlearnlm.training.unlearn_data import PartsCollator, UnlearnDataset

    forget, retain, idk = rows
    mask_question = resolve_method(UnlearnConfig(), name).settings.mask_question  # the method's default
    dataset = UnlearnDataset(forget, retain, idk, tok, fmt, method.parts, mask_question, 512, seed=0)
    order = length_grouped_order(dataset.lengths(), BATCH, seed=0)
    collate = PartsCollator(tok.pad_token_id)
    dyn = [collate([dataset[i] for i in order[i : i + BATCH]]) for i in range(0, len(order), BATCH)]
    pad = [{k: pad_part(v, PAD_TO, tok.pad_token_id) for k, v in batch.items()} for batch in dyn]
    # dynamic: an evenly spaced selection of the epoch's batches when fewer than all are timed
    pick = sorted({round(i * len(dyn) / n_dynamic) for i in range(n_dynamic)}) if n_dynamic < len(dyn) else range(len(dyn))
    return mask_question, dyn, pad, [dyn[i] for i in pick]


def _optimisation_step(method, name: str, model, ref, bf16: bool):
    """One full step on a batch (forward of every part, loss, backward, AdamW); returns the loss."""
    import torch

    from unlearnlm.methods import LossConfig, LossContext

    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
    cfg = LossConfig()

    def step(batch) -> float:
        with common.autocast(bf16):
            loss, _ = method.loss(LossContext(model, batch, ref), cfg, 1.0, 1.0)
        if not torch.isfinite(loss):
            raise RuntimeError(f"{name}: non-finite loss")
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach().item()

    return step


def _tokens(batch) -> tuple[int, int]:
    """(real tokens, all positions) of a batch of parts."""
    real = sum(int(p["attention_mask"].sum()) for p in batch.values())
    return real, sum(p["attention_mask"].numel() for p in batch.values())


def _warm_up(step, dyn: list, pad: list) -> None:
    seconds = []
    for batch in (dyn[0], pad[0]):
        t = time.perf_counter()
        step(batch)
        seconds.append(time.perf_counter() - t)
    print(f"   warm-up: dynamic step {seconds[0]:.1f}s, padded step {seconds[1]:.1f}s (not counted)", flush=True)


def _interleaved(step, pad: list, dyn_timed: list, steps: int) -> dict:
    """Time ``steps`` padded steps, each followed by a share of the dynamic ones; per mode
    {steps, seconds, steps_per_s, tokens_per_step, real_tokens_per_step, real_tokens_per_s}."""
    sw = common.Stopwatch()
    real, total = {"dynamic": 0, "padded": 0}, {"dynamic": 0, "padded": 0}

    def timed(mode: str, batch) -> None:
        with sw(mode):
            step(batch)
        rt, tt = _tokens(batch)
        real[mode] += rt
        total[mode] += tt

    share, queue = math.ceil(len(dyn_timed) / steps), list(dyn_timed)
    for r in range(steps):
        batch = pad[(r + 1) % len(pad)]
        timed("padded", batch)
        rt, tt = _tokens(batch)
        print(f"   padded  step {r + 1}: {sw.seconds['padded'] / sw.counts['padded']:.2f}s mean so far, "
              f"{tt} tokens ({rt} real)", flush=True)
        mine, queue = (queue[:share], queue[share:]) if r < steps - 1 else (queue, [])
        for batch in mine:
            timed("dynamic", batch)
        if mine:
            print(f"   dynamic steps so far {sw.counts['dynamic']}: {sw.seconds['dynamic'] / sw.counts['dynamic']:.2f}s mean", flush=True)
    return {mode: {"steps": sw.counts[mode], "seconds": sw.seconds[mode], "steps_per_s": sw.rate(mode),
                   "tokens_per_step": total[mode] / sw.counts[mode], "real_tokens_per_step": real[mode] / sw.counts[mode],
                   "real_tokens_per_s": real[mode] / sw.seconds[mode]} for mode in ("dynamic", "padded")}


def run_method(name: str, path: str, tok, fmt, rows, steps: int, n_dynamic: int, bf16: bool) -> dict:
    import torch

    from unlearnlm.methods import get_method
    from unlearnlm.models.loading import load_model

    method = get_method(name)
    mask_question, dyn, pad, dyn_timed = _batches(method, name, tok, fmt, rows, n_dynamic)
    torch.manual_seed(0)
    model = load_model(path).train()
    ref = load_model(path).eval().requires_grad_(False) if method.needs_ref else None
    step = _optimisation_step(method, name, model, ref, bf16)
    print(f"\n-- {name}: parts {sorted(method.parts)}, mask_question={mask_question}, "
          f"reference model {'loaded' if ref is not None else 'not needed'}; "
          f"{len(dyn)} batches of {BATCH} per epoch; timing {steps} padded steps and {len(dyn_timed)} dynamic steps")
    _warm_up(step, dyn, pad)
    out = _interleaved(step, pad, dyn_timed, steps)
    out["ratio"] = out["dynamic"]["steps_per_s"] / out["padded"]["steps_per_s"]
    out["token_ratio"] = out["padded"]["tokens_per_step"] / out["dynamic"]["tokens_per_step"]
    del model, ref, step
    return out


def main() -> int:
    p = common.parser(__doc__.split("\n")[0], steps=2)
    p.add_argument("--dynamic-batches", type=int, default=4,
                   help="dynamic batches timed, evenly spaced over the epoch (default 4 of 10)")
    args = p.parse_args()
    threads = common.set_threads(args.threads)
    start = common.header("padding", threads)
    from unlearnlm.models.loading import use_bf16

    bf16 = use_bf16("auto")
    steps = 1 if args.quick else max(1, args.steps)
    n_dynamic = 2 if args.quick else max(1, args.dynamic_batches)
    path, tok, fmt, _ = common.smollm2(with_model=False)
    rows = common.tofu_task1()
    print(f"model {path}; bf16 autocast {bf16}; forget {len(rows[0])} QA, retain {len(rows[1])} QA; batch {BATCH}; "
          f"padded width {PAD_TO}")
    results = {}
    for name in METHODS:
        results[name] = run_method(name, path, tok, fmt, rows, steps, n_dynamic, bf16)

    print("\nmethod  mode     steps  s/step  steps/s  tokens/step (real)  real tokens/s")
    for name, res in results.items():
        for mode in ("dynamic", "padded"):
            r = res[mode]
            print(f"{name:7} {mode:8} {r['steps']:5d} {r['seconds'] / r['steps']:7.2f} {r['steps_per_s']:8.3f} "
                  f"{r['tokens_per_step']:8.0f} ({r['real_tokens_per_step']:5.0f}) {r['real_tokens_per_s']:12.1f}")
        print(f"{name:7} dynamic/padded steps/s = {res['ratio']:.2f}x "
              f"(padded batches hold {res['token_ratio']:.2f}x the tokens)")
    common.footer(start)
    worst = min(results, key=lambda n: results[n]["ratio"])
    text = ", ".join(f"{n} {results[n]['ratio']:.2f}x" for n in results)
    common.summary("padding", f"dynamic/padded-{PAD_TO} steps/s ratio ({text}; worst {worst})",
                   results[worst]["ratio"], GOAL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
