"""Mean answer NLL from the answer logits: the evaluation's chunked logsumexp against cross_entropy.

    python benchmarks/nll_reduction.py [--rows 6300] [--vocab 49152] [--dtype bf16|fp32] [--quick]

The likelihood stage ends with a reduction: from the logits at every answer position (a few
thousand rows of a 49k vocabulary for 20 TOFU forget questions), the mean NLL of each answer.
``evaluation.likelihood._nll_from`` computes logsumexp(z) - z[target] on 64-row float32 chunks
gathered from the batch's logits. Before (``eval_speed.reference_nll_from``, as the evaluation
was when issue 17 was filed), cross_entropy ran on a float32 copy of all the answer rows, which
also writes an N x V log-softmax. Both run here on the same random logits (a batch of 50-token
answers with 10% padding); the best of ``--repeats`` times is kept, and the two results must
agree within 1e-5 nats.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

GOAL = 2.0
TOLERANCE = 1e-5


def _arguments(argv=None):
    p = common.parser(__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=6300, help="answer positions (default 6300: 20 forget questions)")
    p.add_argument("--vocab", type=int, default=49152, help="vocabulary size (default 49152: SmolLM2)")
    p.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16", help="dtype of the logits (default bf16)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.vocab, args.repeats = 300, 4096, 2
    return args


def _best(fn, repeats: int) -> tuple[float, list[float]]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None) -> int:
    import torch

    from eval_speed import reference_nll_from
    from unlearnlm.evaluation.likelihood import AnswerLogits, _nll_from

    args = _arguments(argv)
    start = common.header("nll_reduction", common.set_threads(args.threads))
    width = 50
    batch = -(-args.rows * 10 // 9 // width)  # 10% of the positions are padding
    g = torch.Generator().manual_seed(0)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    logits = (torch.randn(batch, width, args.vocab, generator=g) * 3).to(dtype)
    keep = torch.rand(batch, width, generator=g) < 0.9
    answer = AnswerLogits(logits, keep.nonzero(as_tuple=True),
                          torch.randint(0, args.vocab, (int(keep.sum()),), generator=g))
    print(f"{len(answer.targets)} answer rows of {batch} x {width} positions, vocabulary {args.vocab}, {args.dtype} "
          f"logits; best of {args.repeats}", flush=True)
    t_before, before = _best(lambda: reference_nll_from(answer, batch), args.repeats)
    t_now, now = _best(lambda: _nll_from(answer, batch), args.repeats)
    worst = max(abs(a - b) for a, b in zip(now, before))
    print(f"cross_entropy {t_before:.3f}s, chunked logsumexp {t_now:.3f}s; max |difference| {worst:.2e} nats "
          f"({'within' if worst <= TOLERANCE else 'OUTSIDE'} {TOLERANCE:g})", flush=True)
    common.footer(start)
    common.summary("nll_reduction", f"cross_entropy / chunked logsumexp seconds ({t_before:.3f} vs {t_now:.3f}, "
                                    f"{len(answer.targets)} rows x {args.vocab}, {args.dtype}) ratio",
                   t_before / t_now, GOAL)
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
