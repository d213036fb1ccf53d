"""Markdown tables for docs/results.md, read from the run directories of scripts/reproduce.sh.

    python experiments/summarise.py runs > docs/results/tables.md
    python experiments/summarise.py --evidence-only > docs/results/evidence.md   # issue 17, from experiments/runs

Every number comes from a run's results.json; nothing here is typed by hand. A study whose run
directory is missing or unfinished is reported as such.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from unlearnlm.evaluation.aggregates import MU_METRICS
from unlearnlm.evaluation.store import read_records
from unlearnlm.reports.compare import COMPARED, comparison_tables
from unlearnlm.reports.robustness import robustness_markdown
from unlearnlm.reports.runs import RESULTS_FILE, is_final, load_results
from unlearnlm.reports.seeds import seeds_markdown
from unlearnlm.reports.table import render_markdown, results_table

METRICS = MU_METRICS  # the paper's six, in the tables' order
GRID_RUNS = ("grid-lr1e-4", "grid-lr5e-5")  # the first sets the method order (experiments/grid.yaml)
SEED_RUNS = ("grid-lr1e-4", "grid-lr1e-4-seed1")  # the same grid under unlearning seeds 0 and 1
# Baselines whose defaults barely moved the 135M target, one more setting each (issue 15).
SWEEP_RUNS = (("sweep-simnpo-fc1", "Sweep: SimNPO+GD at forget_coeff 1 (default 0.125), lr 1e-4"),
              ("sweep-rmu-lr1e-3", "Sweep: RMU at lr 1e-3 (grid: 5e-5, 1e-4)"),
              ("sweep-rmu-lr1e-2", "Sweep: RMU at lr 1e-2"),
              ("sweep-satimp-fc1", "Sweep: SatImp+GD at forget_coeff 1 (default 0.1), lr 1e-4"),
              ("sweep-satimp-fc10", "Sweep: SatImp+GD at forget_coeff 10, lr 1e-4"))


def _load(root: Path, name: str) -> dict | None:
    """The run's checked results.json, or None when the study has not run."""
    return load_results(root / name) if (root / name / RESULTS_FILE).is_file() else None


def _cell(row: dict | None, values) -> str:
    """One table cell: "not run", "failed", or ``values(row)`` for a finished row."""
    if row is None:
        return "not run"
    return values(row) if row["status"] == "ok" else "failed"


def _num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _six(row: dict, set_name: str) -> str:
    values = row.get("sets", {}).get(set_name)
    if not values:
        return "-"
    return " / ".join(f"{values[m]:.2f}".replace("0.", ".", 1) if values.get(m) is not None else "-" for m in METRICS)


def _lr(value) -> str:
    """1e-4 rather than 0.0001."""
    if value is None:
        return ""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def zero_scores(row: dict) -> str:
    """The utility-set scores that are exactly 0: any one of them makes MU, a harmonic mean, 0."""
    short = {"retain": "Ret", "neighbor": "Nb", "real_authors": "RA", "world_facts": "WF"}
    abbrev = dict(zip(METRICS, ("R", "P", "TR", "TE", "CS", "ES")))
    zeros = [f"{short[s]} {abbrev[m]}" for s, values in row.get("sets", {}).items() if s in short
             for m in METRICS if values.get(m) == 0]
    return ", ".join(zeros) or "-"


def _agg(row: dict, key: str):
    return row.get("aggregates", {}).get(key)


def _fq(row: dict) -> str:
    fq = _agg(row, "forget_quality")
    return "-" if fq is None else f"{fq:.2g}"


def select_lr(runs: list[dict], fe_bar: float) -> dict:
    """The rule fixed before the grid ran: among a method's runs, the best MU of those with FE at
    or above the grid-wide median FE; if none reaches it, the run with the highest FE."""
    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        return runs[0]
    above = [r for r in ok if _agg(r, "forget_efficacy") >= fe_bar]
    if above:
        return max(above, key=lambda r: (_agg(r, "model_utility"), _agg(r, "forget_efficacy")))
    return max(ok, key=lambda r: _agg(r, "forget_efficacy"))


def _grid(root: Path, fe_bar: float | None) -> tuple[dict, dict[str, list[dict]], dict | None, float]:
    """(the grid runs found, each method's final rows, the target row, the selection bar)."""
    results = {name: _load(root, name) for name in GRID_RUNS}
    present = {k: v for k, v in results.items() if v}
    by_method: dict[str, list[dict]] = {}
    target = None
    for res in present.values():
        for row in res["rows"]:
            if row["label"] == "target":
                target = target or row
            elif row.get("method") and is_final(row):
                by_method.setdefault(row["method"], []).append(row)
    fes = [_agg(r, "forget_efficacy") for runs in by_method.values() for r in runs if r["status"] == "ok"]
    return present, by_method, target, fe_bar if fe_bar is not None else statistics.median(fes) if fes else 0.0


def grid_tables(root: Path, fe_bar: float | None = None) -> str:
    """The grid's every-run and selected-run tables. ``fe_bar``: the selection bar, when it is
    not the median FE of the runs found (a partial grid held to the full grid's bar)."""
    bar_source = "given on the command line" if fe_bar is not None else "grid-wide median FE"
    present, by_method, target, fe_bar = _grid(root, fe_bar)
    if not present:
        return "## Fictitious grid\n\nNo grid run found.\n"
    lrs = sorted({r["lr"] for runs in by_method.values() for r in runs})
    out = ["## Fictitious grid: every run", "",
           f"Runs found: {', '.join(present)}. Selection bar ({bar_source}): {fe_bar:.3f}.", "",
           "| method | " + " | ".join(f"lr {_lr(lr)}: MU / MU Retain / FE / FQ" for lr in lrs) + " | selected lr |",
           "| --- | " + " | ".join("---" for _ in lrs) + " | --- |"]
    chosen = {}
    for method, runs in by_method.items():
        cells = [_cell(next((r for r in runs if r["lr"] == lr), None),
                       lambda r: " / ".join(_num(_agg(r, k)) for k in ("model_utility", "mu_retain", "forget_efficacy"))
                       + f" / {_fq(r)}")
                 for lr in lrs]
        chosen[method] = select_lr(runs, fe_bar)
        out.append(f"| {method} | " + " | ".join(cells) + f" | {_lr(chosen[method]['lr'])} |")
    out += ["", "## Fictitious grid: selected learning rate per method", "",
            "Per set: ROUGE / Probability / Truth ratio / Token entropy / Cosine similarity / Entailment.", "",
            "| model | lr | MU | MU Retain | TOFU MU | FE | FQ | forget | retain | real authors | world facts "
            "| zero scores |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- | --- |"]
    for label, row in [("target", target)] + [(m, r) for m, r in chosen.items()]:
        if row is None:
            continue
        lr = _lr(row.get("lr"))
        out.append(f"| {label} | {lr} | {_num(_agg(row, 'model_utility'))} | {_num(_agg(row, 'mu_retain'))} | "
                   f"{_num(_agg(row, 'tofu_model_utility'))} | {_num(_agg(row, 'forget_efficacy'))} | "
                   f"{_fq(row)} | " + " | ".join(_six(row, s) for s in ("forget", "retain", "real_authors", "world_facts"))
                   + f" | {zero_scores(row)} |")
    return "\n".join(out) + "\n"


# Issue 16: fresh evaluations of the grid's selected models (scripts/reproduce.sh, privacy), with a setting
# label when the run is a sweep's.
PRIVACY_RUNS = (("privacy-lr1e-4", ""), ("privacy-lr5e-5", ""), ("privacy-rmu-lr1e-2", "RMU lr 1e-2"),
                ("privacy-simnpo-fc1", "forget_coeff 1"))
PRIVACY_COLUMNS = (("privleak", "privleak"), ("AUC Min-K%", "auc_mia_min_k"), ("AUC Min-K%++", "auc_mia_min_k_plus_plus"),
                   ("AUC LOSS", "auc_mia_loss"), ("AUC ZLib", "auc_mia_zlib"), ("AUC GradNorm", "auc_mia_gradnorm"),
                   ("AUC Ref", "auc_mia_reference"))


def _with_interval(row: dict, key: str) -> str:
    """The aggregate, with its 95% bootstrap interval when the row has one: 0.435 [0.273, 0.615]."""
    bounds = (row.get("intervals") or {}).get(key)
    text = _num(_agg(row, key))
    return f"{text} [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds and _agg(row, key) is not None else text


def privacy_table(root: Path, runs: tuple[tuple[str, str], ...] = PRIVACY_RUNS) -> str:
    """Privacy and memorisation of the target and every method of the privacy runs (fresh
    evaluations of the grid's selected models): privleak and the attacks' AUCs (forget vs
    holdout; the retain model as reference), forget-set exact memorisation (EM) and extraction
    strength (XS). The AUCs carry their 95% bootstrap intervals (forget and holdout resampled)."""
    found = [(name, setting, res) for name, setting in runs if (res := _load(root, name))]
    if not found:
        return "## Privacy and memorisation\n\nNo privacy run found.\n"
    holdout = next((res.get("holdout") for _, _, res in found if res.get("holdout")), "-")
    out = ["## Privacy and memorisation", "", f"Runs found: {', '.join(n for n, _, _ in found)}. "
           f"Holdout set: {holdout}.", "",
           "| model | setting | FE | " + " | ".join(name for name, _ in PRIVACY_COLUMNS) + " | EM | XS |",
           "| --- | --- | ---: | " + " | ".join("---:" for _ in PRIVACY_COLUMNS) + " | ---: | ---: |"]
    rows = [("target", "-", found[0][2]["rows"][0])] + [
        (row["label"], setting or f"lr {_lr(row.get('lr'))}", row)
        for _, setting, res in found for row in res["rows"] if row.get("method") and is_final(row)]
    for label, setting, row in rows:
        if row["status"] != "ok":
            out.append(f"| {label} | {setting} | failed |")
            continue
        forget, leak = row["sets"].get("forget", {}), _agg(row, "privleak")
        out.append(f"| {label} | {setting} | {_num(_agg(row, 'forget_efficacy'))} | "
                   + ("-" if leak is None else f"{leak:.1f}") + " | "
                   + " | ".join(_with_interval(row, k) for _, k in PRIVACY_COLUMNS[1:])
                   + f" | {_num(forget.get('exact_memorisation'))} | {_num(forget.get('extraction_strength'))} |")
    return "\n".join(out) + "\n"


def robustness_table(root: Path, run: str = "attacks") -> str:
    """Forget Efficacy under each attack and the recovery (issue 18), as the run's report shows them."""
    res = _load(root, run)
    if not res or not res.get("robustness"):
        return "## Robustness to attacks\n\nNo attacked run found.\n"
    count: dict[str, int] = {}
    for e in res["robustness"]:
        if e["label"] != "target":
            count[e["attack"]] = count.get(e["attack"], 0) + 1
    done = ", ".join(f"{a} ({n})" for a, n in count.items())
    return (robustness_markdown(res).replace("## Robustness to attacks", f"## Robustness to attacks ({run})", 1)
            + f"\nUnlearned models with results, per attack: {done}.\n")


def _final_rows(res: dict) -> dict[str, dict]:
    """Method -> its finished end-of-run row."""
    return {r["method"]: r for r in res["rows"] if r.get("method") and is_final(r) and r["status"] == "ok"}


def seed_table(root: Path, runs: tuple[str, str] = SEED_RUNS) -> str:
    """The methods both runs share, under two unlearning seeds (data order), and the mean absolute
    difference per aggregate: how far a single run's numbers move by chance alone."""
    first, second = (_load(root, name) for name in runs)
    if first is None or second is None:
        return f"## Seed variation\n\nNeeds both `{runs[0]}` and `{runs[1]}`.\n"
    keys = (("MU", "model_utility"), ("MU Retain", "mu_retain"), ("FE", "forget_efficacy"),
            ("FQ", "forget_quality"))
    a, b = _final_rows(first), _final_rows(second)
    shared = [m for m in a if m in b]
    out = [f"## Seed variation: `{runs[0]}` vs `{runs[1]}`", "",
           "Each cell: first seed / second seed.", "",
           "| method | " + " | ".join(name for name, _ in keys) + " |",
           "| --- | " + " | ".join("---" for _ in keys) + " |"]
    for method in shared:
        out.append(f"| {method} | " + " | ".join(
            f"{_num(_agg(a[method], k))} / {_num(_agg(b[method], k))}" for _, k in keys) + " |")
    diffs = []
    for _, k in keys:
        pairs = [(_agg(a[m], k), _agg(b[m], k)) for m in shared]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        diffs.append(_num(statistics.fmean(abs(x - y) for x, y in pairs)) if pairs else "-")
    out.append("| mean absolute difference | " + " | ".join(diffs) + " |")
    return "\n".join(out) + "\n"


def repeats_ngram(text: str, n: int = 3, times: int = 3) -> bool:
    """Whether some word n-gram occurs at least ``times`` times in ``text`` (degenerate loops)."""
    words = text.lower().split()
    counts: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        counts[gram] = counts.get(gram, 0) + 1
        if counts[gram] >= times:
            return True
    return False


def _records(run_dir: Path, row: dict, set_name: str) -> list[dict]:
    path = run_dir / row["eval_dir"] / f"{set_name}.jsonl"
    return read_records(path) if path.is_file() else []


def quality_table(root: Path, run: str = "grid-lr1e-4") -> str:
    """Output quality on the utility sets (claim C3): token entropy, the share of answers that
    loop (a word 3-gram three times or more), and each model's lowest-entropy retain answer."""
    res = _load(root, run)
    if res is None:
        return f"## Output quality\n\nNo `{run}` run found.\n"
    utility = ("retain", "real_authors", "world_facts")
    out = [f"## Output quality on the utility sets ({run})", "",
           "TE: token entropy (Retain / Real Authors / World Facts). Loops: share of the utility-set "
           "answers in which a word 3-gram occurs 3 times or more.", "",
           "| model | TE | loops | lowest-entropy retain answer |", "| --- | --- | ---: | --- |"]
    for row in res["rows"]:
        if row["status"] != "ok" or not is_final(row):
            continue
        by_set = {s: _records(root / run, row, s) for s in utility}
        records = [r for s in utility for r in by_set[s]]
        if not records:
            continue
        loops = sum(repeats_ngram(r["generation"]) for r in records) / len(records)
        retain = by_set["retain"]
        worst = min(retain, key=lambda r: r["token_entropy"])["generation"] if retain else ""
        worst = " ".join(worst.split())[:110].replace("|", "/")
        te = " / ".join(_num(row["sets"][s]["token_entropy"], 2) for s in utility)
        out.append(f"| {row['label']} | {te} | {loops:.2f} | {worst} |")
    return "\n".join(out) + "\n"


def continual_table(root: Path) -> str:
    res = _load(root, "continual")
    if res is None:
        return "## Continual\n\nNo continual run found.\n"
    rows = res["rows"]
    target = next((r for r in rows if r["label"] == "target"), None)
    tasks = sorted({r["task"] for r in rows if r.get("task")})
    methods = list(dict.fromkeys(r["method"] for r in rows if r.get("method")))
    out = ["## Continual: after each task", "",
           f"Target before unlearning: MU {_num(_agg(target, 'model_utility'))}, "
           f"MU Retain {_num(_agg(target, 'mu_retain'))}, TOFU MU {_num(_agg(target, 'tofu_model_utility'))}, "
           f"FE {_num(_agg(target, 'forget_efficacy'))} (forget set of task 1)."]
    for title, keys in [("MU / FE", ("model_utility", "forget_efficacy")),
                        ("MU Retain / TOFU MU", ("mu_retain", "tofu_model_utility"))]:
        out += ["", f"{title}:", "", "| method | " + " | ".join(f"after task {t}" for t in tasks) + " |",
                "| --- | " + " | ".join("---" for _ in tasks) + " |"]
        for method in methods:
            cells = [_cell(next((r for r in rows if r.get("method") == method and r.get("task") == t), None),
                           lambda r: " / ".join(_num(_agg(r, k)) for k in keys))
                     for t in tasks]
            out.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _mmlu(row: dict) -> float | None:
    """lm-eval's mmlu_offline accuracy; runs written before lm-eval replaced the hand-written
    scorer hold it as aggregate "mmlu" (letter + EOS likelihood under the chat prompt)."""
    value = _agg(row, "lm_eval:mmlu_offline")
    return _agg(row, "mmlu") if value is None else value


def family_table(root: Path, name: str, title: str) -> str:
    res = _load(root, name)
    if res is None:
        return f"## {title}\n\nNo `{name}` run found.\n"
    sets = list(next(iter(res["rows"]))["sets"]) if res["rows"] else []
    out = [f"## {title}", "", f"Model `{res['model']}`, forget {res['forget']}. "
           "Per set: ROUGE / Probability / Truth ratio / Token entropy / Cosine similarity / Entailment.", "",
           "| model | lr | MU | MU Retain | TOFU MU | FE | MMLU | " + " | ".join(sets) + " | zero scores |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---" for _ in sets) + " | --- |"]
    for row in res["rows"]:
        if not is_final(row):
            continue
        lr = _lr(row.get("lr"))
        if row["status"] != "ok":
            out.append(f"| {row['label']} | {lr} | failed: {row.get('error', '')} |")
            continue
        out.append(f"| {row['label']} | {lr} | {_num(_agg(row, 'model_utility'))} | {_num(_agg(row, 'mu_retain'))} | "
                   f"{_num(_agg(row, 'tofu_model_utility'))} | {_num(_agg(row, 'forget_efficacy'))} | "
                   f"{_num(_mmlu(row), 2)} | "
                   + " | ".join(_six(row, s) for s in sets) + f" | {zero_scores(row)} |")
    return "\n".join(out) + "\n"


# Issue 17: the headline comparisons under 3 seeds at 100 examples per utility set, and on
# forget05 (one seed). Pairs fixed before the runs: the paper's claims C1 and C2, and the two
# strongest baselines of section 1b against the paper's two methods.
EVIDENCE_PAIRS = (("C1", "ME+GD", "GA+GD"), ("C1", "ME+GD", "NPO+GD"), ("C1", "ME+GD", "DPO+GD"),
                  ("C2", "IDK+AP", "IDK+GD"), ("C2", "IDK+AP", "DPO+GD"),
                  ("baselines", "ME+GD", "UNDIAL+GD"), ("baselines", "ME+GD", "PDU"),
                  ("baselines", "IDK+AP", "UNDIAL+GD"), ("baselines", "IDK+AP", "PDU"))


def _comparisons(root: Path, name: str, res: dict) -> str:
    """The paired-difference table of EVIDENCE_PAIRS whose two methods both have a finished row."""
    done = {r["method"] for r in res["rows"] if r.get("method") and r["status"] == "ok" and is_final(r)}
    pairs = [(claim, f"{root / name}:{a}", f"{root / name}:{b}") for claim, a, b in EVIDENCE_PAIRS
             if a in done and b in done]
    if not pairs:
        return "No pair of compared methods has finished yet.\n"
    utility, privacy = comparison_tables(pairs, (COMPARED, PRIVACY_COMPARED))
    return ("Each cell: A - B of the seed-averaged aggregate, its 95% paired bootstrap interval over "
            "questions (the same questions drawn for every model), and how many seeds' own differences "
            "share its sign.\n\n" + utility + "\nMembership-inference AUCs (forget against "
            "holdout; 0.5: the forget set looks unseen), the same pairs and draws:\n\n" + privacy)


PRIVACY_COMPARED = (("AUC Min-K%++", "auc_mia_min_k_plus_plus"), ("AUC Min-K%", "auc_mia_min_k"),
                    ("AUC LOSS", "auc_mia_loss"))


# Issue 17's table: the headline aggregates with their 95% intervals (reports/table.py columns).
EVIDENCE_COLUMNS = ("label", "MU", "MU_retain", "TOFU_MU", "FE", "FQ", "privleak", "AUC_MinK++")


def evidence_tables(root: Path) -> str:
    """Issue 17's study (experiments/evidence*.yaml): every method under 3 seeds with its
    across-seed spread, and the claims' paired differences; forget05 at one seed."""
    out = []
    for name, title in (("evidence", "Evidence: 3 seeds, 100 examples per utility set"),
                        ("evidence-forget05", "Evidence: forget05 (200 forget QA), one seed")):
        res = _load(root, name)
        if res is None:
            out.append(f"## {title}\n\nNo `{name}` run found under {root}.\n")
            continue
        seeds = seeds_markdown(res).replace("## Across seeds", "Across seeds:", 1)
        out += [family_table(root, name, title), f"With 95% bootstrap intervals ({name}):\n",
                render_markdown([r for r in results_table(res) if is_final(r)], EVIDENCE_COLUMNS),
                seeds, f"Paired differences ({name}):\n", _comparisons(root, name, res)]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    """``summarise.py [RUNS] [--records DIR] [--grid-only [--fe-bar X] | --evidence-only]``: every
    table, or the grid's and its sweeps', or issue 17's (``--records``: its committed run directories)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="?", default="runs")
    parser.add_argument("--grid-only", action="store_true", help="print only the grid and sweep tables")
    parser.add_argument("--fe-bar", type=float, help="selection bar instead of the median FE of the runs found")
    parser.add_argument("--records", default="experiments/runs",
                        help="run directories kept in git without their models (issue 17's study)")
    parser.add_argument("--evidence-only", action="store_true", help="print only issue 17's study tables")
    args = parser.parse_args(argv[1:])
    root = Path(args.runs)
    if args.evidence_only:
        print("\n".join([evidence_tables(Path(args.records)), quality_table(Path(args.records), "evidence")]))
        return 0
    sweeps = [family_table(root, name, title) for name, title in SWEEP_RUNS]
    if args.grid_only:
        print("\n".join([grid_tables(root, args.fe_bar), *sweeps, privacy_table(root)]))
        return 0
    print("\n".join([
        grid_tables(root),
        *sweeps,
        privacy_table(root),
        robustness_table(root),
        seed_table(root),
        quality_table(root),
        continual_table(root),
        family_table(root, "gemma", "Second family: Gemma-3-270m"),
        quality_table(root, "gemma"),
        family_table(root, "real_world", "Real-world"),
        evidence_tables(Path(args.records)),
        quality_table(Path(args.records), "evidence"),
    ]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
