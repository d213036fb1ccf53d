"""The offline NLI judge: a MiniLM cross-encoder fine-tuned on TOFU pairs (docs/method.md, section 7).

    path = build_offline_nli(data_dir, eval_questions, cache_dir)   # cache_dir/nli-<key>/

The packaged all-MiniLM-L6-v2 encoder plus a fresh 3-way head, trained on TOFU forget10
paraphrase / perturbation pairs of authors that the evaluation never sees (every author
with a question in ``exclude_questions`` is left out). Built once per key and reused; its
held-out accuracy is stored in ``judge_info.json``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from unlearnlm.errors import ConfigError, DataError, ModelError, NumericalError
from unlearnlm.evaluation.judges.embedder import (
    PACKAGED_MINILM_DIST,
    PACKAGED_MINILM_NAME,
    packaged_minilm_path,
)
from unlearnlm.evaluation.judges.labels import JUDGE_INFO, LABELS
from unlearnlm.evaluation.judges.nli_pairs import (
    DEFAULT_HELDOUT_FRACTION,
    DEFAULT_QUESTION_FRACTION,
    DEFAULT_SWAP_FRACTION,
    ROWS_PER_AUTHOR,
    NLIPair,
    NLIPairs,
    make_nli_pairs,
)
from unlearnlm.evaluation.judges.quiet import quiet_transformers

TOFU_PAIRS_FILE = "forget10_perturbed.json"
_BUILD_FORMAT = 2  # bump when the pair construction or training changes

# Build defaults, tuned on 2 shared CPU cores (held-out accuracy, seed 0, 900 held-out pairs):
#   3000 pairs x 2 epochs, lr 5e-5: 0.869 | lr 1e-4: 0.909 | lr 2e-4: 0.920
#   4500 pairs x 1 epoch, lr 2e-4: 0.861  | 6000 pairs x 1 epoch, lr 1e-4: 0.933
# With 30% question-prefixed premises (format 2): 6000 x 1, lr 1e-4: 0.896 | lr 2e-4: 0.926 (chosen)
# 375 optimizer steps of batch 16 (about 190 s here); see judge_info.json for a given build.
DEFAULT_MAX_PAIRS = 6000
DEFAULT_EPOCHS = 1
DEFAULT_LR = 2e-4
DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_LENGTH = 128
DEFAULT_MAX_HELDOUT_PAIRS = 900


# --------------------------------------------------------------------------- offline build


def _tofu_pairs_file(data_dir: str | os.PathLike | None) -> Path:
    from unlearnlm.data.bundle import find_data_file
    from unlearnlm.data.loading import resolve_data_dir

    root = resolve_data_dir(data_dir)
    for cand in (root / "tofu" / TOFU_PAIRS_FILE, root / TOFU_PAIRS_FILE):
        if found := find_data_file(cand):
            return found
    raise DataError(f"{root / 'tofu' / TOFU_PAIRS_FILE}: file not found (needed to build the offline NLI judge)")


def _packaged_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(PACKAGED_MINILM_DIST)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def offline_judge_key(exclude_questions: Iterable[str], params: Mapping[str, Any]) -> str:
    """Short sha256 of the sorted excluded questions and the build parameters."""
    h = hashlib.sha256()
    h.update(json.dumps(sorted(set(exclude_questions)), ensure_ascii=False).encode("utf-8"))
    h.update(b"\0")
    h.update(json.dumps(dict(params), sort_keys=True, default=str).encode("utf-8"))
    return h.hexdigest()[:12]


def _is_complete(d: Path) -> bool:
    return (d / JUDGE_INFO).is_file() and (d / "model.safetensors").is_file() and (d / "config.json").is_file()


def _bf16_autocast_ok() -> bool:
    """bf16 autocast on CPU only where the CPU has native bf16 (else it is slower)."""
    import torch

    env = os.environ.get("UNLEARNLM_NLI_BF16")
    if env is not None:
        return env.strip().lower() in ("1", "true", "yes", "on")
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001
        return False


def _evaluate(model, tokenizer, pairs: Sequence[NLIPair], max_length: int, batch_size: int = 64):
    import torch

    label2id = {lab: i for i, lab in enumerate(LABELS)}
    order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i].premise) + len(pairs[i].hypothesis)))
    correct = {lab: 0 for lab in LABELS}
    total = {lab: 0 for lab in LABELS}
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            batch = [pairs[i] for i in order[s : s + batch_size]]
            enc = tokenizer(
                [p.premise for p in batch],
                [p.hypothesis for p in batch],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            pred = model(**enc).logits.argmax(-1).tolist()
            for p, c in zip(batch, pred):
                total[p.label] += 1
                correct[p.label] += int(c == label2id[p.label])
    recall = {lab: (correct[lab] / total[lab] if total[lab] else float("nan")) for lab in LABELS}
    present = [r for lab, r in recall.items() if total[lab]]
    balanced = sum(present) / len(present) if present else float("nan")
    return balanced, recall


def build_offline_nli(
    data_dir: str | os.PathLike | None,
    exclude_questions: Iterable[str],
    cache_dir: str | os.PathLike,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    progress: bool = True,
    *,
    lr: float = DEFAULT_LR,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int = DEFAULT_MAX_LENGTH,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    swap_fraction: float = DEFAULT_SWAP_FRACTION,
    question_fraction: float = DEFAULT_QUESTION_FRACTION,
    max_heldout_pairs: int = DEFAULT_MAX_HELDOUT_PAIRS,
    num_threads: int | None = None,
) -> Path:
    """Build (or reuse) the offline NLI judge; returns its model folder ``cache_dir/nli-<key>``.

    A MiniLM cross-encoder (packaged all-MiniLM-L6-v2 encoder + fresh 3-way head) fine-tuned
    on TOFU forget10 pairs of authors none of whose questions is in ``exclude_questions``
    (pass every question of the scenario's evaluation sets).

    ``num_threads``: torch CPU threads during the build (None: torch's setting). On a CPU
    shared with other busy processes, 1 thread can be several times faster than 2."""
    if max_pairs < 3:
        raise ConfigError(f"offline NLI judge: max_pairs must be >= 3, got {max_pairs}")
    if epochs < 1:
        raise ConfigError(f"offline NLI judge: epochs must be >= 1, got {epochs}")
    if num_threads is not None and num_threads < 1:
        raise ConfigError(f"offline NLI judge: num_threads must be >= 1, got {num_threads}")
    exclude = set(exclude_questions)
    pairs_file = _tofu_pairs_file(data_dir)
    params = _build_params(
        pairs_file, max_pairs=max_pairs, epochs=epochs, seed=seed, lr=lr, batch_size=batch_size,
        max_length=max_length, heldout_fraction=heldout_fraction, swap_fraction=swap_fraction,
        question_fraction=question_fraction, max_heldout_pairs=max_heldout_pairs,
    )
    key = offline_judge_key(exclude, params)
    cache_dir = Path(cache_dir).expanduser()
    out = cache_dir / f"nli-{key}"
    if _is_complete(out):
        if progress:
            acc = json.loads((out / JUDGE_INFO).read_text(encoding="utf-8")).get("heldout_accuracy")
            print(f"NLI judge: using cached {out} (held-out accuracy {acc if acc is None else round(acc, 3)})")
        return out
    t0 = time.time()
    pairs = _training_pairs(pairs_file, exclude, params)
    with _torch_threads(num_threads):
        tokenizer, model, use_bf16 = _train(pairs, params, progress)
        accuracy, recall = _evaluate(model, tokenizer, pairs.heldout, max_length)
        print(
            f"NLI judge held-out accuracy: {accuracy:.3f} ({len(pairs.heldout)} pairs, "
            f"{len(pairs.heldout_authors)} authors held out)",
            flush=True,
        )
        info = _judge_info(pairs, pairs_file, params, key, len(exclude), accuracy, recall,
                           seconds=time.time() - t0, use_bf16=use_bf16)
    _save_atomically(model, tokenizer, info, out)
    return out


def _build_params(pairs_file: Path, **build: Any) -> dict:
    """Everything that determines the built judge: its cache key is a hash of these."""
    from unlearnlm.data.bundle import content_sha256

    casts = {"lr": float, "heldout_fraction": float, "swap_fraction": float, "question_fraction": float}
    return {
        "format": _BUILD_FORMAT,
        "base_model": f"{PACKAGED_MINILM_NAME}@{PACKAGED_MINILM_DIST}=={_packaged_version()}",
        "data_sha256": content_sha256(pairs_file),
        **{name: casts.get(name, int)(value) for name, value in build.items()},
    }


def _training_pairs(pairs_file: Path, exclude: set[str], params: Mapping[str, Any]) -> NLIPairs:
    from unlearnlm.data.loading import read_jsonl

    rows = read_jsonl(
        pairs_file,
        required=["question", "answer", "paraphrased_answer", "perturbed_answer"],
        list_fields=["perturbed_answer"],
    )
    pairs = make_nli_pairs(
        rows,
        exclude,
        params["seed"],
        max_pairs=params["max_pairs"],
        max_heldout_pairs=params["max_heldout_pairs"],
        heldout_fraction=params["heldout_fraction"],
        swap_fraction=params["swap_fraction"],
        question_fraction=params["question_fraction"],
    )
    if not pairs.train or not pairs.heldout:
        raise DataError(
            f"{pairs_file}: too few authors for the offline NLI judge after excluding the evaluation "
            f"authors ({len(pairs.eligible_authors)} eligible of {len(rows) // ROWS_PER_AUTHOR})"
        )
    return pairs


@contextlib.contextmanager
def _torch_threads(num_threads: int | None):
    """torch's CPU thread count set to ``num_threads`` (None: unchanged) for the block."""
    import torch

    old_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)


def _load_classifier(base: Path):
    """The packaged MiniLM with a fresh 3-way head; its embedding matrix frozen."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    id2label = dict(enumerate(LABELS))
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True, trust_remote_code=False)
            model = AutoModelForSequenceClassification.from_pretrained(
                str(base),
                num_labels=len(LABELS),
                id2label=id2label,
                label2id={lab: i for i, lab in id2label.items()},
                use_safetensors=True,
                local_files_only=True,
                trust_remote_code=False,
            )
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"cannot load the packaged MiniLM from {base}: {type(e).__name__}: {e}") from None
    # The word-embedding matrix is half the parameters: freezing it saves ~15% of each step
    # (its dense gradient and AdamW update) at no measurable cost in accuracy.
    model.get_input_embeddings().weight.requires_grad_(False)
    return tokenizer, model


def _length_bucketed_batches(lengths: Sequence[int], batch_size: int, gen: random.Random) -> list[list[int]]:
    """One epoch's batches of example indices: shuffled, then sorted by length within chunks of 50
    batches (less padding), and the batches shuffled."""
    idx = list(range(len(lengths)))
    gen.shuffle(idx)
    chunk = batch_size * 50
    batches = []
    for c in range(0, len(idx), chunk):
        part = sorted(idx[c : c + chunk], key=lambda i: lengths[i])
        batches.extend(part[b : b + batch_size] for b in range(0, len(part), batch_size))
    gen.shuffle(batches)
    return batches


def _optimizer(model, lr: float, total_steps: int):
    """AdamW (no weight decay on biases and norms) with 10% linear warm-up, then linear decay."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    no_decay = ("bias", "LayerNorm.weight", "layernorm", "layer_norm")
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in trainable if not any(s in n for s in no_decay)], "weight_decay": 0.01},
        {"params": [p for n, p in trainable if any(s in n for s in no_decay)], "weight_decay": 0.0},
    ]
    optim = torch.optim.AdamW(groups, lr=lr)
    return optim, get_linear_schedule_with_warmup(optim, max(1, int(0.1 * total_steps)), total_steps)


def _train(pairs: NLIPairs, params: Mapping[str, Any], progress: bool):
    """Fine-tune the classifier on ``pairs.train``; returns (tokenizer, model, whether bf16 autocast ran)."""
    import torch

    seed, batch_size, epochs = params["seed"], params["batch_size"], params["epochs"]
    random.seed(seed)
    torch.manual_seed(seed)
    tokenizer, model = _load_classifier(packaged_minilm_path())
    model.train()
    label2id = model.config.label2id
    enc = tokenizer([p.premise for p in pairs.train], [p.hypothesis for p in pairs.train],
                    truncation=True, max_length=params["max_length"])
    features = [{k: enc[k][i] for k in enc.keys()} | {"labels": label2id[p.label]} for i, p in enumerate(pairs.train)]
    total_steps = math.ceil(len(features) / batch_size) * epochs
    optim, sched = _optimizer(model, params["lr"], total_steps)
    trainable = [p for p in model.parameters() if p.requires_grad]
    use_bf16 = _bf16_autocast_ok()
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
    bar = _progress_bar(total_steps) if progress else None
    gen = random.Random(seed)
    running = None
    for _epoch in range(epochs):
        for b in _length_bucketed_batches([len(f["input_ids"]) for f in features], batch_size, gen):
            with autocast():
                loss = model(**tokenizer.pad([features[i] for i in b], return_tensors="pt")).loss
            if not torch.isfinite(loss):
                raise NumericalError("offline NLI judge: non-finite training loss; try a lower lr")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optim.step()
            sched.step()
            optim.zero_grad(set_to_none=True)
            running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{running:.3f}")
    if bar is not None:
        bar.close()
    return tokenizer, model, use_bf16


def _progress_bar(total_steps: int):
    from tqdm.auto import tqdm

    return tqdm(total=total_steps, desc="building offline NLI judge", unit="step")


def _judge_info(pairs: NLIPairs, pairs_file: Path, params: Mapping[str, Any], key: str, n_exclude: int,
                accuracy: float, recall: Mapping[str, float], *, seconds: float, use_bf16: bool) -> dict:
    """What ``judge_info.json`` records about a build."""
    import torch

    return {
        "name": f"offline-minilm-nli:{key}",
        "key": key,
        "heldout_accuracy": accuracy,
        "heldout_per_class_recall": recall,
        "n_train_pairs": len(pairs.train),
        "n_heldout_pairs": len(pairs.heldout),
        "excluded_authors": len(pairs.excluded_authors),
        "eligible_authors": len(pairs.eligible_authors),
        "heldout_authors": len(pairs.heldout_authors),
        "n_exclude_questions": n_exclude,
        "seed": params["seed"],
        "build_seconds": round(seconds, 1),
        "bf16_autocast": use_bf16,
        "torch_threads": torch.get_num_threads(),
        "base_model": params["base_model"],
        "data_file": pairs_file.name,
        "params": dict(params),
        "labels": list(LABELS),
    }


def _save_atomically(model, tokenizer, info: Mapping[str, Any], out: Path) -> None:
    """Write the judge into a temporary folder beside ``out``, then rename it into place."""
    from unlearnlm.io import write_json

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        model.eval()
        with quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        if not (tmp / "model.safetensors").is_file():
            raise ModelError(f"offline NLI judge: save_pretrained wrote no model.safetensors in {tmp}")
        write_json(tmp / JUDGE_INFO, info)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
        try:
            os.rename(tmp, out)
        except OSError:
            if not _is_complete(out):  # a half-built folder from a crash: replace it
                shutil.rmtree(out, ignore_errors=True)
                os.rename(tmp, out)
            # else another process finished the same build first: keep theirs
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
