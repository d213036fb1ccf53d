"""The three scenarios end to end: fine-tune (cached), evaluate, unlearn each method, evaluate.

    run_dir = run(load_config("demo"))      # then: unlearnlm report RUN_DIR

Every step is resumable: finished models and evaluated sets are reused, not recomputed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path

from unlearnlm.config.load import config_to_dict, model_key_options
from unlearnlm.config.schema import RunConfig
from unlearnlm.data import tofu
from unlearnlm.data.loading import resolve_data_dir
from unlearnlm.errors import ConfigError, NumericalError
from unlearnlm.data.holdout import holdout_rows
from unlearnlm.evaluation.aggregates import MIA_METRICS
from unlearnlm.evaluation.evaluate import compare_with_retain, evaluate_model, is_evaluated
from unlearnlm.evaluation.judges.factory import Judges, exclude_questions_for, load_judges
from unlearnlm.evaluation.harness import check_tasks, lm_eval_aggregates
from unlearnlm.io import read_json, write_json
from unlearnlm.pipeline.rundir import open_run_dir, safe_label
from unlearnlm.pipeline.start import StartModel, real_world_start, start_models
from unlearnlm.reports.model_card import write_model_card
from unlearnlm.methods.settings import resolve_method
from unlearnlm.training.layout import ModelFolder
from unlearnlm.training.unlearn import unlearn_model
from unlearnlm.utils import log


def _family(cfg: RunConfig) -> str:
    return "real_world" if cfg.data.split == tofu.REAL_WORLD else "tofu"


def _wants_membership_inference(cfg: RunConfig) -> bool:
    return cfg.eval.metrics is None or bool(set(cfg.eval.metrics) & set(MIA_METRICS))


def _eval_key(cfg: RunConfig, tasks: list[str], judges: Judges) -> str:
    # Options that do not change one model's set scores stay out of the key (lm-eval results
    # are kept per task and limit inside the folder, set results per metric).
    unscored = ("forget_quality", "eval_epochs", "lm_eval_tasks", "lm_eval_limit", "metrics", "bootstrap_resamples",
                "attacks", "attack")
    scoring = {k: v for k, v in config_to_dict(cfg.eval).items() if k not in unscored}
    payload = {"eval": scoring, "model": model_key_options(cfg.model),
               "split": cfg.data.split, "tasks": tasks, "judges": judges.describe()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def seed_suffixes(cfg: RunConfig) -> list[tuple[int, str]]:
    """(unlearning seed, label suffix) of each repetition: one unsuffixed run at
    ``unlearn.train.seed``, or with ``seeds`` one "/seedN" per listed seed (a single one too,
    so that a run reopened with other seeds never reuses another seed's model)."""
    if not cfg.seeds:
        return [(cfg.unlearn.train.seed, "")]
    return [(s, f"/seed{s}") for s in cfg.seeds]


def _unlearn_config(cfg: RunConfig, seed: int) -> RunConfig:
    """One repetition's options: its unlearning seed, and a model kept per epoch when
    ``eval.eval_epochs`` asks for epoch rows."""
    train = dataclasses.replace(cfg.unlearn.train, seed=seed,
                                save_every_epoch=cfg.unlearn.train.save_every_epoch or cfg.eval.eval_epochs)
    return dataclasses.replace(cfg, unlearn=dataclasses.replace(cfg.unlearn, train=train))


def _row(label: str, summary: dict, eval_dir: Path, run_dir: Path, **fields) -> dict:
    aggregates = dict(summary["aggregates"])
    aggregates.setdefault("forget_quality", None)
    aggregates.update(lm_eval_aggregates(summary.get("lm_eval") or {}))
    if "holdout" not in summary["sets"]:  # one row set shape for the reports
        aggregates.update(dict.fromkeys(f"auc_{m}" for m in MIA_METRICS))
    return {"label": label, "method": None, "task": None, "epoch": None, "lr": None, "seed": None, **fields,
            "aggregates": aggregates, "intervals": (summary.get("intervals") or {}).get("aggregates", {}),
            "sets": summary["sets"], "eval_dir": str(eval_dir.relative_to(run_dir)), "status": "ok"}


def _merged(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with each (label, attack) entry of ``new`` replaced in place or appended."""
    fresh = {(e["label"], e["attack"]): e for e in new}
    out = [fresh.pop((e["label"], e["attack"]), e) for e in old]
    return out + list(fresh.values())


def _failed_row(label: str, error: str, **fields) -> dict:
    return {"label": label, "method": None, "task": None, "epoch": None, "lr": None, "seed": None, **fields,
            "aggregates": {}, "sets": {}, "status": "failed", "error": error}


class Run:
    """Shared state of one run: config, run directory, judges and results rows."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        check_tasks(cfg.eval.lm_eval_tasks)
        self.dir = open_run_dir(cfg)
        self.rows: list[dict] = []
        # The attacks' entries (attacks/run.py), kept across resumes and later `unlearnlm attack` calls.
        previous = self.dir / "results.json"
        self.robustness: list[dict] = read_json(previous).get("robustness", []) if previous.is_file() else []
        self.judges = load_judges(cfg, exclude_questions_for(cfg))
        self.retain_eval: Path | None = None
        self.holdout, self.holdout_source = holdout_rows(cfg) if _wants_membership_inference(cfg) \
            else (None, "no membership-inference metric selected (eval.metrics)")
        log(f"holdout set: {self.holdout_source}")

    def eval_sets(self, tasks: list[str], only: tuple[str, ...] | None = None) -> dict[str, list[dict]]:
        """The evaluation sets for ``tasks`` (all, or those in ``only``), the holdout set included."""
        cfg = self.cfg
        sets = tofu.eval_sets(resolve_data_dir(cfg.data.data_dir), cfg.data.split, tasks, cfg.eval.ds_size)
        if self.holdout:
            sets["holdout"] = self.holdout[: cfg.eval.ds_size]
        return {name: rows for name, rows in sets.items() if only is None or name in only}

    def evaluate_cached(self, model: StartModel, tasks: list[str], run_eval_dir: Path,
                        only: tuple[str, ...] | None = None) -> dict:
        """Evaluate a shared model (target, retain model) once, on every set or the sets in
        ``only``; later runs copy the results."""
        cache = model.evaluations / _eval_key(self.cfg, tasks, self.judges)
        if not (cache / "summary.json").is_file() and (run_eval_dir / "summary.json").is_file():
            # A fresh cache (another machine, a cleared cache) with a restored run directory:
            # start from the run's copy; every set in it is checked as usual before it is reused.
            shutil.copytree(run_eval_dir, cache, dirs_exist_ok=True)
        summary = evaluate_model(model.path, self.cfg, self.eval_sets(tasks, only), _family(self.cfg), cache,
                                 self.judges)
        if run_eval_dir.exists():
            shutil.rmtree(run_eval_dir)
        shutil.copytree(cache, run_eval_dir)
        return summary

    def against_retain_model(self, row: dict, eval_dir: Path) -> None:
        """Forget Quality, privleak and the Reference attack of the row's model (needs the retain model)."""
        if self.retain_eval is not None:
            aggregates, intervals = compare_with_retain(eval_dir, self.retain_eval, self.cfg.eval.bootstrap_resamples)
            row["aggregates"].update(aggregates)
            row["intervals"] = {**row.get("intervals", {}), **intervals}

    def evaluate(self, label: str, model_dir: Path, tasks: list[str], **fields) -> dict:
        eval_dir = self.dir / "eval" / safe_label(label)
        summary = evaluate_model(model_dir, self.cfg, self.eval_sets(tasks), _family(self.cfg), eval_dir, self.judges)
        row = _row(label, summary, eval_dir, self.dir, **fields)
        if not fields.get("task"):
            self.against_retain_model(row, eval_dir)
        write_model_card(model_dir, row, self.judges.describe())  # the run's own models only
        self.rows.append(row)
        self.save()
        return row

    def unlearn_and_evaluate(self, method: str, start: Path, label: str, tasks: list[str],
                             unlearned: list[str], ref: Path | None = None, seed: int | None = None,
                             leaf: bool = True, **fields) -> Path | None:
        """Unlearn ``method`` from ``start`` into ``models/<label>`` and evaluate it. ``leaf``:
        no later step starts from this model, so a complete evaluation stands in for a deleted
        model folder (continual tasks are not leaves)."""
        out = self.dir / "models" / safe_label(label)
        lr = resolve_method(self.cfg.unlearn, method).settings.train.lr
        seed = self.cfg.unlearn.train.seed if seed is None else seed
        fields["seed"] = seed
        eval_tasks = unlearned if fields.get("task") else tasks
        if leaf and self.evaluated_without_model(label, out, eval_tasks):
            self.evaluate(label, out, eval_tasks, method=method, lr=lr, **fields)
            return out
        try:
            unlearn_model(_unlearn_config(self.cfg, seed), method, start, out, tasks, unlearned, ref)
        except NumericalError as e:
            log(f"[{label}] FAILED: {e}")
            self.rows.append(_failed_row(label, str(e), method=method, lr=lr, **fields))
            self.save()
            return None
        self.evaluate(label, out, eval_tasks, method=method, lr=lr, **fields)
        if self.cfg.eval.eval_epochs:
            for epoch, epoch_dir in ModelFolder(out).epoch_dirs():
                # the same sets as the final row (continual: every task so far) and its fields
                self.evaluate(f"{label}/epoch{epoch}", epoch_dir, eval_tasks, method=method, lr=lr, epoch=epoch,
                              **fields)
        return out

    def evaluated_without_model(self, label: str, out: Path, tasks: list[str]) -> bool:
        """True when ``label``'s model folder is gone (deleted for space, or a run directory
        restored without its models) but its evaluation is complete: nothing to retrain.
        Not with ``eval.eval_epochs``, whose epoch rows need the epoch folders."""
        if ModelFolder(out).is_done or self.cfg.eval.eval_epochs:
            return False
        eval_dir = self.dir / "eval" / safe_label(label)
        if not is_evaluated(self.cfg, self.eval_sets(tasks), _family(self.cfg), eval_dir, self.judges):
            return False
        log(f"[{label}] no model folder, evaluation complete in {eval_dir}: reused, not retrained")
        return True

    def start(self, which: tuple[str, ...]) -> dict[str, StartModel]:
        """The run's starting models (``start.py``), recorded in its manifest."""
        models = start_models(self.cfg, which)
        self.record_start(models)
        return models

    def record_start(self, models: dict[str, StartModel]) -> None:
        """Record the starting models in the manifest; a resumed run whose starting model has
        other weights (refitted on another processor, or changed) is refused, not mixed."""
        manifest = read_json(self.dir / "manifest.json")
        before = manifest.get("start_models", {})
        for w, m in models.items():
            old, new = before.get(w, {}).get("weights_sha256"), m.source.get("weights_sha256")
            if old and new and old != new:
                raise ConfigError(f"run_name: {self.dir} started from a {w} model with other weights (sha256 "
                                  f"{old[:12]}, now {new[:12]} at {m.path}); its results would mix two {w} models: "
                                  "choose another run_name")
        write_json(self.dir / "manifest.json", manifest | {"start_models": {w: m.source for w, m in models.items()}})

    def attack(self, cached_only: bool = False, labels: set[str] | None = None) -> None:
        """The attacks of ``eval.attacks`` on the target and every unlearned model (``labels``:
        only these and the target), saved after each attack (``cached_only``: collect the
        finished ones, compute nothing)."""
        if self.cfg.eval.attacks:
            from unlearnlm.attacks.run import attack_models

            for new in attack_models(self, cached_only, labels):
                self.robustness = _merged(self.robustness, new)
                self.save()

    def save(self) -> None:
        cfg = self.cfg
        results = {
            "run_name": cfg.run_name, "scenario": cfg.scenario, "model": cfg.model.name,
            "forget": f"{cfg.data.split} task {', '.join(cfg.data.tasks)}",
            "judges": self.judges.describe(), "holdout": self.holdout_source, "rows": self.rows,
        }
        if self.robustness:
            results["robustness"] = self.robustness
        write_json(self.dir / "results.json", results)


def run(cfg: RunConfig) -> Path:
    """Run the scenario of ``cfg`` and write its run directory; returns the directory."""
    start = time.time()
    if cfg.scenario == "real_world" and cfg.data.split != tofu.REAL_WORLD:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, split=tofu.REAL_WORLD))
    state = Run(cfg)
    {"fictitious": _fictitious, "continual": _continual, "real_world": _real_world}[cfg.scenario](state)
    log(f"run {cfg.run_name}: done in {time.time() - start:.0f}s -> {state.dir}")
    return state.dir


def _fictitious(state: Run) -> None:
    cfg = state.cfg
    forget_quality = cfg.eval.forget_quality or bool(cfg.model.retain)
    models = state.start(("target", "retain") if forget_quality else ("target",))
    tasks = list(cfg.data.tasks)
    if forget_quality:
        state.retain_eval = state.dir / "eval" / "retain_model"
        # Forget Quality needs the retain model's forget-set truth ratios, privleak its
        # forget and holdout membership scores.
        state.evaluate_cached(models["retain"], tasks, state.retain_eval, only=("forget", "holdout"))
    target_eval = state.dir / "eval" / "target"
    summary = state.evaluate_cached(models["target"], tasks, target_eval)
    row = _row("target", summary, target_eval, state.dir)
    state.against_retain_model(row, target_eval)
    state.rows.append(row)
    state.save()
    for seed, suffix in seed_suffixes(cfg):  # every method at one seed before the next seed
        for method in cfg.methods:
            state.unlearn_and_evaluate(method, models["target"].path, method + suffix, tasks, tasks, seed=seed)
    state.attack()


def _continual(state: Run) -> None:
    """Unlearn tasks in sequence; each starts from the previous task's model."""
    cfg = state.cfg
    target = state.start(("target",))["target"]
    tasks = list(cfg.data.tasks)
    target_eval = state.dir / "eval" / "target"
    state.rows.append(_row("target", state.evaluate_cached(target, tasks[:1], target_eval),
                           target_eval, state.dir))
    for seed, suffix in seed_suffixes(cfg):
        for method in cfg.methods:
            previous = target.path
            for i, task in enumerate(tasks):
                ref = target.path if cfg.unlearn.fix_ref_model else previous
                out = state.unlearn_and_evaluate(method, previous, f"{method}{suffix}/task{task}", [task],
                                                 tasks[: i + 1], ref=ref, seed=seed, leaf=False, task=i + 1)
                if out is None:
                    break
                previous = out


def _real_world(state: Run) -> None:
    """An instruct model as it is: forget real people, keep their neighbours."""
    cfg = state.cfg
    base = real_world_start(cfg)
    state.record_start({"target": base})
    tasks = list(cfg.data.tasks)
    target_eval = state.dir / "eval" / "target"
    state.rows.append(_row("target", state.evaluate_cached(base, tasks, target_eval),
                           target_eval, state.dir))
    state.save()
    for seed, suffix in seed_suffixes(cfg):
        for method in cfg.methods:
            state.unlearn_and_evaluate(method, base.path, method + suffix, tasks, tasks, seed=seed)
    state.attack()
