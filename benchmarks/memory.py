"""Peak resident memory of an ME+GD unlearning run vs NPO+KL (SmolLM2-135M, CPU).

    python benchmarks/memory.py [--steps 3] [--no-lora] [--quick] [--threads auto] [--chunk N]
    python benchmarks/memory.py --no-lora --model gemma3-270m --methods ME+GD --chunk 32 \
        --checkpointing --optim adamw_torch_fused --vs-full-logits     # the excess-halving goal

``--chunk N`` runs with ``unlearn.loss_chunk_size=N`` (the output head and loss over N positions
at a time, never the full [B,T,V] logits). Each method's peak is also reported against its
floor: the imports, plus weights, gradients and two AdamW moments (4 model-sized fp32 tensors),
plus the frozen reference where the method holds one. ``--vs-full-logits`` also runs ME+GD with
the full logits, no checkpointing and the default AdamW in the same invocation, and prints the
ratio of the two excesses (the goal: at most 0.5).

Each run is the real ``training.unlearn.unlearn_model`` path (dataset, UnlearnTrainer,
AdamW, bf16 autocast as use_bf16("auto"), epoch checkpoint, final save) in its own
subprocess with a temporary output folder, TOFU forget01 task 1, batch 4, no gradient
accumulation, ``--steps`` optimisation steps (epochs = steps / 10). Its peak is the child's
own VmHWM (peak resident set), so the runs' peaks never mix. ME+GD holds no reference
model; NPO+KL loads a frozen copy of the model as reference.

The goal compares the project's default (full fine-tuning) runs. The same pair with
``unlearn.train.lora=true`` is measured too (unless ``--no-lora``), as evidence of where the
memory goes: with full fine-tuning the AdamW state and gradients (3 model-sized tensors) are
held by both methods, so one extra frozen copy changes the total far less than 1.67x.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

GOAL = 0.6
EXCESS_GOAL = 0.5  # ME+GD's excess over its floor, against the full-logit run's
STEPS_PER_EPOCH = 10  # 40 forget QA / batch 4


def child(method: str, steps: int, lora: bool, out: Path, chunk: int = 0, model: str = common.MODEL_ALIAS,
          checkpointing: bool = False, optim: str = "adamw_torch") -> None:
    """One unlearning run; prints one JSON line with the peak RSS."""
    import dataclasses

    from unlearnlm.config.schema import RunConfig
    from unlearnlm.models.offline import prepare_offline_model
    from unlearnlm.training import unlearn
    from unlearnlm.training.unlearn import unlearn_model

    # Peak right after the last optimisation step (before the epoch checkpoint and final save):
    # VmHWM only grows, so reading it after every step keeps the training-phase peak.
    marks = {}
    original = unlearn.UnlearnTrainer.training_step

    def training_step(self, *a, **k):
        out = original(self, *a, **k)
        marks["train_peak"] = common.peak_rss_mib()
        return out

    unlearn.UnlearnTrainer.training_step = training_step
    loads, load_model = [], unlearn.load_model  # how many model copies the run loads

    def counting_load(*a, **k):
        loads.append(a[0])
        return load_model(*a, **k)

    unlearn.load_model = counting_load
    cfg = RunConfig()
    train = dataclasses.replace(cfg.unlearn.train, epochs=steps / STEPS_PER_EPOCH, batch_size=4, grad_accum=1,
                                lora=lora, gradient_checkpointing=checkpointing, optim=optim)
    cfg.unlearn = dataclasses.replace(cfg.unlearn, method=method, train=train, loss_chunk_size=chunk)
    after_import = common.peak_rss_mib()
    t = time.time()
    manifest = unlearn_model(cfg, method, prepare_offline_model(model), out / "model", ["1"])
    steps_done = max((h.get("step", 0) for h in manifest["log_history"]), default=0)
    print("RESULT " + json.dumps({
        "method": method, "lora": lora, "peak_rss_mib": common.peak_rss_mib(),
        "peak_after_imports_mib": after_import, "peak_training_mib": marks.get("train_peak"), "seconds": time.time() - t, "steps": steps_done,
        "ref_model": manifest["ref_model"] is not None, "models_loaded": len(loads),
    }), flush=True)


def run_child(method: str, steps: int, lora: bool, threads: int, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="unlearnlm-mem-") as tmp:
        cmd = [sys.executable, __file__, "--child", method, "--steps", str(steps), "--threads", str(threads),
               "--out", tmp, "--chunk", str(args.chunk), "--model", args.model] + (["--lora"] if lora else []) \
            + (["--checkpointing"] if args.checkpointing else []) + ["--optim", args.optim]
        t = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            raise RuntimeError(f"{method} (lora={lora}) child failed with exit code {proc.returncode}")
        res = json.loads(lines[-1][len("RESULT "):])
        res["wall"] = time.time() - t
        return res


def _reference(r: dict) -> str:
    if not r["ref_model"]:
        return "not needed"
    return "a second copy" if r["models_loaded"] > 1 else "the base model (LoRA adapter disabled), no copy"


def _floor(r: dict, lora: bool, param_mib: float) -> float:
    """Imports + weights, gradients, 2 AdamW moments (LoRA: the frozen weights only; its adapter's
    weights, gradients and moments are < 1% here) + a reference copy where one is loaded."""
    return r["peak_after_imports_mib"] + (1 if lora else 4) * param_mib + (param_mib if r["models_loaded"] > 1 else 0)


def _excess_vs_full_logits(args, steps: int, threads: int, run: dict, param_mib: float) -> None:
    """ME+GD's excess over its floor against the same run with full logits, no checkpointing and
    the default AdamW, measured in this invocation."""
    import argparse

    base_args = argparse.Namespace(**{**vars(args), "chunk": 0, "checkpointing": False, "optim": "adamw_torch"})
    print(f"-- ME+GD with full logits: {steps} steps in a subprocess; load {common.load_average()}", flush=True)
    base = run_child("ME+GD", steps, False, threads, base_args)
    excess, base_excess = (r["peak_rss_mib"] - _floor(r, False, param_mib) for r in (run, base))
    ratio = excess / base_excess
    print(f"ME+GD excess over the floor: {excess:.0f} MiB (this run) vs {base_excess:.0f} MiB (full logits, "
          f"peak {base['peak_rss_mib']:.0f} MiB): ratio {ratio:.2f}, goal <= {EXCESS_GOAL}: "
          f"{'met' if ratio <= EXCESS_GOAL else 'MISSED'}")


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def main() -> int:
    p = common.parser(__doc__.split("\n")[0], steps=3)
    p.add_argument("--no-lora", action="store_true", help="skip the LoRA pair")
    p.add_argument("--lora", action="store_true", help="(internal) the child uses LoRA")
    p.add_argument("--child", help="(internal) run one method in this process")
    p.add_argument("--out", help="(internal) output folder of the child")
    p.add_argument("--chunk", type=int, default=0, help="unlearn.loss_chunk_size (0: full logits)")
    p.add_argument("--model", default=common.MODEL_ALIAS, help="offline alias (default: SmolLM2; gemma3-270m: 262k vocabulary)")
    p.add_argument("--checkpointing", action="store_true", help="unlearn.train.gradient_checkpointing=true")
    p.add_argument("--methods", default="ME+GD,NPO+KL", help="comma-separated (the ratio needs both)")
    p.add_argument("--optim", default="adamw_torch", help="unlearn.train.optim (adamw_torch_fused: no per-tensor temporaries)")
    p.add_argument("--vs-full-logits", action="store_true",
                   help="also run ME+GD with full logits, no checkpointing, adamw_torch; print the excess ratio")
    args = p.parse_args()
    if args.child:
        common.set_threads(args.threads)
        child(args.child, args.steps, args.lora, Path(args.out), args.chunk, args.model, args.checkpointing, args.optim)
        return 0
    threads = common.set_threads(args.threads)
    start = common.header("memory", threads)
    steps = 1 if args.quick else max(1, args.steps)
    pairs = [False] if (args.no_lora or args.quick) else [False, True]
    results = {}
    for lora in pairs:
        for method in args.methods.split(","):
            print(f"-- {method}{' (LoRA)' if lora else ''}: {steps} steps in a subprocess; load {common.load_average()}",
                  flush=True)
            r = run_child(method, steps, lora, threads[0], args)
            results[(method, lora)] = r
            print(f"   peak RSS {r['peak_rss_mib']:.0f} MiB (after imports {r['peak_after_imports_mib']:.0f} MiB, "
                  f"up to the last training step {r['peak_training_mib']:.0f} MiB; the rest is checkpoint/final save), "
                  f"{r['steps']} steps, reference model {_reference(r)}, "
                  f"{r['wall']:.0f}s wall", flush=True)

    from safetensors import safe_open

    from unlearnlm.models.offline import prepare_offline_model

    with safe_open(str(prepare_offline_model(args.model) / "model.safetensors"), "pt") as f:
        n_params = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())  # lm_head tied: not stored
    print("\nrun             peak RSS MiB   peak up to the last step MiB")
    for (method, lora), r in results.items():
        print(f"{method + (' LoRA' if lora else ''):15} {r['peak_rss_mib']:12.0f} {r['peak_training_mib']:14.0f}")
    ratios = {}
    for lora in pairs if {"ME+GD", "NPO+KL"} <= set(args.methods.split(",")) else []:
        me, npo = results[("ME+GD", lora)], results[("NPO+KL", lora)]
        ratios[lora] = me["peak_rss_mib"] / npo["peak_rss_mib"]
        print(f"ME+GD / NPO+KL{' (LoRA)' if lora else ''}: whole run {ratios[lora]:.3f}, "
              f"training steps only {me['peak_training_mib'] / npo['peak_training_mib']:.3f}")
    param_mib = n_params * 4 / 2**20
    print(f"\nfloor = imports + weights, gradients, 2 AdamW moments (LoRA: weights only) (+ a reference copy); model {args.model}, "
          f"loss_chunk_size={args.chunk}, gradient checkpointing {args.checkpointing}, optim {args.optim}")
    for (method, lora), r in results.items():
        floor = _floor(r, lora, param_mib)
        print(f"{method + (' LoRA' if lora else ''):15} peak {r['peak_rss_mib']:6.0f} MiB, floor {floor:6.0f} MiB, "
              f"excess {r['peak_rss_mib'] - floor:6.0f} MiB, models loaded {r['models_loaded']}")
    if args.vs_full_logits:
        _excess_vs_full_logits(args, steps, threads[0], results[("ME+GD", False)], param_mib)
    print(f"model weights in fp32: {param_mib:.0f} MiB; full fine-tuning holds weights + gradients + 2 AdamW "
          f"moments = {4 * param_mib:.0f} MiB in both methods, NPO+KL adds the frozen reference "
          f"({param_mib:.0f} MiB): even with nothing else resident the ratio cannot drop below "
          f"{4 / 5:.2f}")
    common.footer(start)
    if False not in ratios:
        return 0
    extra = f"; LoRA pair {ratios[True]:.2f}x" if True in ratios else ""
    common.summary("memory", f"ME+GD/NPO+KL peak RSS ({results[('ME+GD', False)]['peak_rss_mib']:.0f} / "
                             f"{results[('NPO+KL', False)]['peak_rss_mib']:.0f} MiB, full fine-tuning{extra}) ratio",
                   ratios[False], GOAL, higher_is_better=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
