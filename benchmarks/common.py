"""Small helpers shared by the benchmark scripts: arguments, threads, timing, peak memory,
machine load, the SmolLM2-135M model, the TOFU forget01 task-1 rows, an NLI judge for the
evaluation benchmarks and a Linear-layer FLOP counter.

Every figure a benchmark judges is a ratio of two things measured in the same process and
the same minutes (the machine is often shared), and every script ends with one line

    SUMMARY <name>: <ratio> (goal <goal>: met|missed)
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))


# --------------------------------------------------------------------------- arguments
def parser(description: str, steps: int | None = None) -> argparse.ArgumentParser:
    """--steps (when the benchmark has steps), --quick, --threads."""
    p = argparse.ArgumentParser(description=description)
    if steps is not None:
        p.add_argument("--steps", type=int, default=steps, help=f"timed steps (default {steps})")
    p.add_argument("--quick", action="store_true", help="fewer steps/examples: a smoke run, not a measurement")
    p.add_argument(
        "--threads", default="auto",
        help="torch intra-op threads; 'auto' (default): all cores on an idle machine, fewer when other "
             "processes already load it (oversubscribed OpenMP threads spin and run several times slower)",
    )
    return p


def set_threads(spec: str | int = "auto") -> tuple[int, str]:
    """Set torch's intra-op threads; returns (threads, reason)."""
    import torch

    cores = os.cpu_count() or 1
    if str(spec) != "auto":
        n = max(1, int(spec))
        reason = "--threads"
    else:
        busy = os.getloadavg()[0]  # runnable processes over the last minute, ours not started yet
        n = max(1, min(cores, cores - int(round(busy)))) if busy >= 0.75 else cores
        reason = f"auto: {cores} cores, 1-min load {busy:.2f} before start"
    torch.set_num_threads(n)
    return n, reason


# --------------------------------------------------------------------------- machine
def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(name: str, threads: tuple[int, str] | None = None) -> float:
    """Print what the run is on; returns the start time."""
    import torch

    print(f"== benchmark {name}")
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, python {platform.python_version()}")
    if threads:
        print(f"torch threads: {threads[0]} ({threads[1]})")
    print(f"load average (1/5/15 min) at start: {load_average()}")
    sys.stdout.flush()
    return time.time()


def footer(start: float) -> None:
    print(f"load average (1/5/15 min) at end: {load_average()}; wall time {time.time() - start:.0f}s")


def summary(name: str, text: str, value: float, goal: float, higher_is_better: bool = True, unit: str = "x") -> str:
    """Print and return the SUMMARY line."""
    met = value >= goal if higher_is_better else value <= goal
    sign = ">=" if higher_is_better else "<="
    line = f"SUMMARY {name}: {text} = {value:.2f}{unit} (goal {sign} {goal:g}{unit}: {'met' if met else 'missed'})"
    print(line, flush=True)
    return line


# --------------------------------------------------------------------------- timing & memory
class Stopwatch:
    """Accumulates wall seconds under named keys: ``with sw("padded"): step()``."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    @contextlib.contextmanager
    def __call__(self, key: str, count: int = 1):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t
            self.counts[key] = self.counts.get(key, 0) + count

    def rate(self, key: str) -> float:
        return self.counts[key] / max(self.seconds[key], 1e-12)


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (VmHWM; getrusage where /proc is absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024.0


def current_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def matmul_peak(dtype, n: int = 2048, seconds: float = 3.0, device: str = "cpu", best: bool = False) -> float:
    """Sustained FLOP/s of n x n @ n x n products in ``dtype`` (2 n^3 FLOPs each) over about
    ``seconds`` after two warm-up products: the mean rate of three bursts, or the best burst."""
    import torch

    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(2):
        torch.mm(a, b)
    sync()
    t = time.perf_counter()
    torch.mm(a, b)
    sync()
    one = max(time.perf_counter() - t, 1e-6)
    reps = max(1, int(seconds / 3 / one))
    rates = []
    for _ in range(3):
        sync()
        t = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        sync()
        rates.append(2.0 * n**3 * reps / (time.perf_counter() - t))
    return max(rates) if best else 3.0 / sum(1.0 / r for r in rates)  # mean rate = total FLOPs / total time


# --------------------------------------------------------------------------- model & data
MODEL_ALIAS = "smollm2-135m"


def smollm2(with_model: bool = True):
    """(path, tokenizer, prompt format, model or None) of the converted SmolLM2-135M."""
    from unlearnlm.data.prompts import PromptFormat
    from unlearnlm.models.loading import load_model, load_tokenizer
    from unlearnlm.models.offline import prepare_offline_model

    path = str(prepare_offline_model(MODEL_ALIAS))
    tok = load_tokenizer(path)
    fmt = PromptFormat.for_tokenizer(tok)
    model = load_model(path) if with_model else None
    return path, tok, fmt, model


def tofu_task1():
    """(forget rows, retain rows, idk answers) of TOFU forget01 task 1 (40 / 3,960 QA)."""
    from unlearnlm.data import tofu
    from unlearnlm.data.loading import resolve_data_dir

    d = resolve_data_dir()
    return tofu.forget_rows(d, "forget01", ["1"]), tofu.retain_rows(d, "forget01", ["1"]), tofu.idk_answers(d)


def model_shape(config) -> dict:
    """Layers, hidden size, vocabulary and the matmul parameter count of a Llama-style config."""
    L, d = config.num_hidden_layers, config.hidden_size
    heads, kv = config.num_attention_heads, getattr(config, "num_key_value_heads", config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or d // heads
    ff, V = config.intermediate_size, config.vocab_size
    attn = d * heads * head_dim * 2 + d * kv * head_dim * 2  # q, o; k, v
    mlp = 3 * d * ff  # gate, up, down
    return {
        "layers": L, "hidden": d, "heads": heads, "head_dim": head_dim, "vocab": V,
        "block_matmul_params": L * (attn + mlp), "lm_head_params": d * V,
        "matmul_params": L * (attn + mlp) + d * V,
    }


def model_flops(shape: dict, seq_lens) -> float:
    """Training FLOPs (forward + backward) of sequences with these real lengths.

    6 x N_matmul x tokens, N_matmul = every weight matrix that multiplies activations: the 7
    matrices of each block plus the lm_head (tied to the embeddings, but still a d x V matmul;
    the embedding lookup and norms are not counted), plus causal-agnostic attention
    12 x layers x (heads x head_dim) x T^2 per sequence of T real tokens (QK^T and AV: 2 x 2 x T^2
    x heads x head_dim forward, x3 for forward + backward; the PaLM-paper convention)."""
    tokens = sum(seq_lens)
    attn = sum(12 * shape["layers"] * shape["heads"] * shape["head_dim"] * t * t for t in seq_lens)
    return 6.0 * shape["matmul_params"] * tokens + attn


def autocast(bf16: bool, device: str = "cpu"):
    import torch

    return torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


# --------------------------------------------------------------------------- evaluation helpers
def nli_judge(tmp: Path):
    """The cached offline NLI judge if one is built, else a tiny random BERT NLI classifier."""
    from unlearnlm.evaluation.judges.labels import JUDGE_INFO
    from unlearnlm.evaluation.judges.nli import NLIJudge
    from unlearnlm.models.offline import cache_root

    built = sorted(d for d in (cache_root() / "judges").glob("nli-*")
                   if (d / JUDGE_INFO).is_file() and (d / "model.safetensors").is_file())
    if built:
        judge = NLIJudge(str(built[-1]))
        return judge, f"offline NLI judge {judge.name} ({built[-1]})"
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from unlearnlm.evaluation.judges.embedder import packaged_minilm_path

    tok = AutoTokenizer.from_pretrained(str(packaged_minilm_path()))
    config = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, max_position_embeddings=512, num_labels=3,
        id2label={0: "entailment", 1: "neutral", 2: "contradiction"},
        label2id={"entailment": 0, "neutral": 1, "contradiction": 2},
    )
    torch.manual_seed(0)
    folder = tmp / "tiny-nli"
    BertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return (NLIJudge(str(folder), name="tiny random BERT NLI (benchmark stand-in)"),
            "tiny random BERT NLI classifier (2 layers, hidden 64, MiniLM tokenizer; no offline judge "
            "built in the cache yet)")


class LinearFlops:
    """Counts 2 x in x out FLOPs per token row of every nn.Linear forward while active."""

    def __init__(self, model):
        import torch

        self.flops, self.handles = 0.0, []
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                self.handles.append(m.register_forward_pre_hook(self._count))

    def _count(self, module, args):
        x = args[0]
        self.flops += 2.0 * module.in_features * module.out_features * (x.numel() // x.shape[-1])

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
