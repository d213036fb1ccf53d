"""Run the attacks of ``eval.attacks`` on a run's models (docs/method.md, section 9).

    for entries in attack_models(state):   # state: pipeline.scenarios.Run with its rows; one attack at a time

Layout, all resumable (a finished model folder or evaluated set is reused):

    RUN_DIR/attacks/<label>/<attack>/settings.json   the eval.attack fields it used (a change recomputes)
    RUN_DIR/attacks/<label>/<attack>/model/          the attacked model (model attacks; a plain HF folder)
    RUN_DIR/attacks/<label>/<attack>/eval/           its forget-set evaluation
    RUN_DIR/attacks/<label>/second_half/eval/        the model as it is, on the relearning attacks' scored half

Each entry of ``results.json``'s "robustness" list is one (model, attack): ``robustness.py``.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from unlearnlm.attacks.registry import ATTACKS, Attack
from unlearnlm.attacks.relearn import halves
from unlearnlm.attacks.robustness import robustness
from unlearnlm.config.load import config_to_dict
from unlearnlm.config.schema import AttackConfig, RunConfig
from unlearnlm.data import tofu
from unlearnlm.data.loading import resolve_data_dir
from unlearnlm.evaluation.evaluate import evaluate_model
from unlearnlm.evaluation.store import read_records
from unlearnlm.io import read_json, write_json
from unlearnlm.pipeline.rundir import safe_label
from unlearnlm.training.unlearn import unlearning_rows
from unlearnlm.utils import log


@dataclass(frozen=True)
class AttackContext:
    """What every attack reads: the settings and the question sets."""

    cfg: RunConfig
    settings: AttackConfig
    forget: list[dict]  # the evaluated forget set
    trained_on: list[dict]  # the forget half the relearning attack trains on
    second_half: list[dict]  # the other half, where relearning is scored (capped at eval.ds_size)
    retain: list[dict]  # retain QA (few-shot examples, benign relearning)
    cached_only: bool = False  # collect what is already computed; compute nothing


class NotCached(Exception):
    """An attacked model or evaluation is not on disk (``cached_only``)."""


def attack_context(state, tasks: list[str], cached_only: bool = False) -> AttackContext:
    cfg = state.cfg
    whole = tofu.interleave_tasks(tofu.forget_rows(resolve_data_dir(cfg.data.data_dir), cfg.data.split, tasks,
                                                   perturbed=True))
    trained_on, second_half = halves(whole, cfg.eval.attack.seed)
    return AttackContext(cfg, cfg.eval.attack, state.eval_sets(tasks, only=("forget",))["forget"], trained_on,
                         second_half[: cfg.eval.ds_size], unlearning_rows(cfg, tasks, tasks)[1], cached_only)


def _family(cfg: RunConfig) -> str:
    return "real_world" if cfg.data.split == tofu.REAL_WORLD else "tofu"


def _prepared(folder: Path, settings: dict, cached_only: bool = False) -> Path:
    """``folder`` holding results of exactly ``settings`` (other settings' results removed;
    ``cached_only``: nothing is touched, and other settings' results are not cached ones)."""
    path = folder / "settings.json"
    if path.is_file() and read_json(path) == settings:
        return folder
    if cached_only:
        raise NotCached(f"{folder} (no results of these settings)")
    if folder.exists():
        log(f"[attack] {folder}: settings changed, recomputing")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    write_json(path, settings)
    return folder


def _evaluate(state, ctx: AttackContext, model_dir: Path, rows: list[dict], out: Path, prompt_edit=None) -> list[dict]:
    if ctx.cached_only:
        if not (out / "forget.summary.json").is_file():
            raise NotCached(out)
        return read_records(out / "forget.jsonl")
    evaluate_model(model_dir, state.cfg, {"forget": rows}, _family(state.cfg), out, state.judges,
                   prompt_edit=prompt_edit)
    return read_records(out / "forget.jsonl")


def attacked_records(state, ctx: AttackContext, attack: Attack, label: str, model_dir: Path) -> list[dict]:
    """The forget records of ``model_dir`` under ``attack`` (built and evaluated once)."""
    settings = {"attack": attack.name, **{k: config_to_dict(ctx.settings)[k] for k in attack.settings}}
    folder = _prepared(state.dir / "attacks" / safe_label(label) / attack.name, settings, ctx.cached_only)
    rows = ctx.forget if attack.scored == "forget" else ctx.second_half
    if attack.kind == "model":
        if not ctx.cached_only:
            attack.apply(ctx, model_dir, folder / "model")
        return _evaluate(state, ctx, folder / "model", rows, folder / "eval")
    asked, edit = attack.apply(ctx, rows)
    return _evaluate(state, ctx, model_dir, asked, folder / "eval", prompt_edit=edit)


def plain_records(state, ctx: AttackContext, attack: Attack, row: dict, model_dir: Path) -> list[dict]:
    """The model as it is, on the questions ``attack`` scores."""
    if attack.scored == "forget":
        return read_records(state.dir / row["eval_dir"] / "forget.jsonl")
    folder = _prepared(state.dir / "attacks" / safe_label(row["label"]) / "second_half",
                       {"seed": ctx.settings.seed, "n": len(ctx.second_half)}, ctx.cached_only)
    return _evaluate(state, ctx, model_dir, ctx.second_half, folder / "eval")


RETAIN_MODEL = "retain_model"


def attacked_rows(rows: list[dict], run_dir: Path) -> list[dict]:
    """The rows whose models are attacked: the target, every finished final model and, when the
    run evaluated one, the retain model (the control: it never learned the forget set, so what an
    attack gives it back is learned afresh, not recovered)."""
    out = [r for r in rows if r.get("status") == "ok" and not r.get("task") and r.get("epoch") is None]
    if (run_dir / "eval" / RETAIN_MODEL / "forget.jsonl").is_file():
        out.append({"label": RETAIN_MODEL, "method": None, "status": "ok", "eval_dir": f"eval/{RETAIN_MODEL}"})
    return out


def attack_models(state, cached_only: bool = False, labels: set[str] | None = None):
    """Every attack of ``eval.attacks`` on the target and every unlearned model of ``state.rows``
    (``labels``: only these, and the target, every attack's baseline); yields the entries of
    one attack at a time (``cached_only``: only those already computed)."""
    cfg = state.cfg
    rows = [r for r in attacked_rows(state.rows, state.dir) if not labels or r["label"] in labels | {"target"}]
    target = next((r for r in rows if r["label"] == "target"), None)
    if not cfg.eval.attacks or target is None:
        return
    ctx = attack_context(state, list(cfg.data.tasks), cached_only)
    models = {r["label"]: Path(read_json(state.dir / r["eval_dir"] / "summary.json")["model"]) for r in rows}
    for attack in (ATTACKS.get(n) for n in cfg.eval.attacks):
        log(f"[attack] {attack.name}: {attack.description}")
        try:
            target_plain = plain_records(state, ctx, attack, target, models["target"])
            baseline = target_plain if attack.baseline == "plain" else \
                attacked_records(state, ctx, attack, "target", models["target"])
        except NotCached as e:
            log(f"[attack] {attack.name}: not computed yet ({e}), skipped")
            continue
        entries = []
        for row in rows:
            if row["label"] == "target" and attack.baseline == "plain":
                continue  # the target is this attack's baseline as it is
            try:
                entries.append(_entry(state, ctx, attack, row, row is target, models, target_plain, baseline))
            except NotCached as e:
                log(f"[attack] {attack.name} on {row['label']}: not computed yet ({e}), skipped")
        yield entries


def _entry(state, ctx, attack: Attack, row: dict, is_target: bool, models: dict, target_plain, baseline) -> dict:
    before = target_plain if is_target else plain_records(state, ctx, attack, row, models[row["label"]])
    after = baseline if is_target else attacked_records(state, ctx, attack, row["label"], models[row["label"]])
    result = robustness(before, after, target_plain if is_target else baseline, state.cfg.eval.bootstrap_resamples)
    log(f"[attack] {attack.name} on {row['label']}: FE {result['fe_before']:.3f} -> {result['fe_after']:.3f}")
    return {"label": row["label"], "method": row.get("method"), "attack": attack.name, "scored": attack.scored,
            **result}
