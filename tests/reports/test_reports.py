"""Reports of a synthetic run directory: every number shown equals results.json."""
from __future__ import annotations

import csv
import json
import random
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

from unlearnlm.errors import UnlearnError
from unlearnlm.reports import build_report, load_results
from unlearnlm.reports.figures import plot_continual, plot_dynamics, plot_heatmap, plot_mu_fe
from unlearnlm.reports.html import write_html
from unlearnlm.reports.runs import METRIC_SHORT, aggregate_columns, fmt
from unlearnlm.reports.table import print_table, render_markdown, results_table, write_csv

SETS = ("forget", "retain", "real_authors", "world_facts")
METRICS = tuple(METRIC_SHORT)
METHODS = ("ME+GD", "IDK+AP", "NPO+GD")
TRICKY_Q = "Who wrote <b>\"Tea & Toast\"</b>?"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(rng, label, method=None, epoch=None, task=None, sets=SETS):
    sets = {s: {m: round(rng.random(), 4) for m in METRICS} for s in sets}
    return {
        "label": label, "method": method, "task": task, "epoch": epoch, "lr": None if method is None else 1e-5,
        "aggregates": {"model_utility": round(rng.random(), 4), "forget_efficacy": round(rng.random(), 4),
                       "mu_retain": round(rng.random(), 4), "forget_quality": 0.00042,
                       "tofu_model_utility": round(rng.random(), 4),
                       "lm_eval:mmlu_offline": round(rng.random(), 4), "lm_eval:mmlu_offline:stderr": 0.0125},
        "sets": sets, "eval_dir": f"eval/{label}", "status": "ok",
    }


def make_run(root: Path, name: str = "demo", seed: int = 0, continual: bool = False, sets=SETS) -> Path:
    rng = random.Random(seed)
    rows = [_row(rng, "target", sets=sets)]
    for method in METHODS:
        rows.append(_row(rng, method, method, sets=sets))
        for k in (1, 2, 3):
            snapshot = {"task": k} if continual else {"epoch": k}
            rows.append(_row(rng, f"{method}/{next(iter(snapshot))}{k}", method, sets=sets, **snapshot))
    rows.append({"label": "GA+GD", "method": "GA+GD", "task": None, "epoch": None, "lr": 1e-5,
                 "status": "failed", "error": "NaN loss at step 12", "aggregates": {}, "sets": {}})
    results = {
        "run_name": name, "scenario": "continual" if continual else "fictitious",
        "model": "smollm2-135m", "forget": "forget01 task 1",
        "judges": {"embedder": "all-MiniLM-L6-v2 (packaged)", "nli": "offline MiniLM cross-encoder",
                   "nli_heldout_accuracy": 0.93},
        "rows": rows,
    }
    run = root / name
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(results, indent=2))
    questions = {s: [TRICKY_Q if s == "forget" else f"{s} question 0"] + [f"{s} question {i}" for i in (1, 2, 3, 4)]
                 for s in sets}
    for row in rows:
        if row["status"] != "ok" or row["epoch"] is not None or row["task"] is not None:
            continue
        (run / row["eval_dir"]).mkdir(parents=True)
        for s in sets:
            qs = questions[s] if row["label"] != "NPO+GD" else questions[s][::-1]  # other order
            recs = [{"question": q, "reference": f"reference for {q}", "generation": f"{row['label']} says <{q}>",
                     **{m: round(rng.random(), 3) for m in METRICS}} for q in qs]
            (run / row["eval_dir"] / f"{s}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return run


@pytest.fixture
def run_dir(tmp_path):
    return make_run(tmp_path)


@pytest.fixture
def results(run_dir):
    return load_results(run_dir)


class Tables(HTMLParser):
    """Cell texts of every <table>: tables[i][row][col]."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag in ("table", "tr"):
            (self.tables if tag == "table" else self.tables[-1]).append([])
        self._cell = [] if tag in ("td", "th") else self._cell

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_csv_round_trips_results_json(results, tmp_path):
    path = write_csv(results_table(results), tmp_path / "r.csv")
    parsed = {r["label"]: r for r in csv.DictReader(path.read_text().splitlines())}
    assert list(parsed) == [r["label"] for r in results["rows"]]
    for row in results["rows"]:
        got = parsed[row["label"]]
        assert got["status"] == row["status"]
        for column, key in aggregate_columns(results["rows"]):
            value = row["aggregates"].get(key)
            assert (got[column] == "") if value is None else (float(got[column]) == value)
        for s in SETS:
            for m in METRICS:
                value = row["sets"].get(s, {}).get(m)
                assert (got[f"{s}/{m}"] == "") if value is None else float(got[f"{s}/{m}"]) == value
    assert parsed["GA+GD"]["error"] == "NaN loss at step 12"
    assert parsed["ME+GD/epoch2"]["epoch"] == "2"


def test_markdown_shows_every_value(results):
    md = render_markdown(results_table(results))
    lines = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    for row in results["rows"]:
        line = lines[row["label"]]
        if row["status"] != "ok":
            assert "NaN loss at step 12" in line
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        expected = [fmt(row["aggregates"].get(k)) for c, k in aggregate_columns(results["rows"])
                    if any(r["aggregates"].get(k) is not None for r in results["rows"])]
        expected += [fmt(row["sets"][s][m]) for s in SETS for m in METRICS]
        assert cells[-len(expected):] == expected
    assert "4.20e-04" in md  # the FQ p-value keeps its digits
    header = [c.strip() for c in md.splitlines()[0].strip("|").split("|")]
    assert header[:5] == ["label", "status", "method", "epoch", "lr"]  # all-null task column hidden
    assert header[10:12] == ["mmlu_offline", "mmlu_offline_stderr"]  # lm-eval's value, then its stderr
    assert "forget/TR" in header and "world_facts/ES" in header


def test_html_tables_match_results(results, run_dir, tmp_path):
    path = write_html([results], [run_dir], tmp_path / "report.html")
    page = path.read_text()
    parser = Tables()
    parser.feed(page)
    info, aggregates, sets = parser.tables[0], parser.tables[1], parser.tables[2]
    assert ["NLI held-out accuracy", "0.930"] in info
    assert ["NLI judge (ES)", "offline MiniLM cross-encoder"] in info
    assert "Entailment score (ES) judge: offline MiniLM cross-encoder (held-out accuracy 0.930)" in page
    header = aggregates[0]
    by_label = {r[0]: r for r in aggregates[1:]}
    for row in results["rows"]:
        cells = by_label[row["label"]]
        if row["status"] != "ok":
            assert cells[-1] == "failed: NaN loss at step 12"
            continue
        assert "mmlu_offline" in header and "mmlu_offline_stderr" in header
        for column, key in aggregate_columns(results["rows"]):
            if column in header:
                assert cells[header.index(column)] == fmt(row["aggregates"][key])
    set_rows = {r[0]: r[1:] for r in sets[2:]}
    assert sets[0][1:] == list(SETS) and sets[1] == [METRIC_SHORT[m] for m in METRICS] * len(SETS)
    for row in results["rows"]:
        if row["status"] == "ok":
            assert set_rows[row["label"]] == [fmt(row["sets"][s][m]) for s in SETS for m in METRICS]


def test_html_is_self_contained_and_escaped(results, run_dir, tmp_path):
    page = write_html([results], [run_dir], tmp_path / "report.html").read_text()
    assert "<script" not in page.lower()
    assert "http://" not in page and "https://" not in page
    assert page.count('src="data:image/png;base64,') == 3  # mu_fe, heatmap, dynamics
    assert TRICKY_Q not in page and "Who wrote &lt;b&gt;&quot;Tea &amp; Toast&quot;&lt;/b&gt;?" in page


def test_sample_answers_side_by_side(results, run_dir, tmp_path):
    from html import escape
    page = write_html([results], [run_dir], tmp_path / "r.html", n_samples=2).read_text()
    for s, q in (("forget", TRICKY_Q), ("retain", "retain question 1")):
        assert f"{s} set" in page
        for label in ("target", *METHODS):  # NPO+GD's file lists questions in reverse order
            assert escape(f"{label} says <{q}>") in page
    assert "retain question 2" not in page  # n_samples=2
    assert "world_facts question 0" not in page  # only forget and retain are sampled
    assert "NaN loss at step 12" in page.split("Sample answers")[1]


def test_mu_fe_scatter_plots_the_results(results, tmp_path):
    fig = plot_mu_fe(results, tmp_path / "mu_fe.png")
    ax = fig.axes[0]
    final = [r for r in results["rows"] if r["epoch"] is None and r["task"] is None and r["status"] == "ok"]
    points = sorted(tuple(map(float, p)) for c in ax.collections for p in c.get_offsets())
    want = sorted((r["aggregates"]["forget_efficacy"], r["aggregates"]["model_utility"]) for r in final)
    assert points == want  # exactly the numbers of results.json
    star = [c for c in ax.collections if c.get_label().startswith("target")]
    target = results["rows"][0]["aggregates"]
    assert len(star) == 1 and tuple(star[0].get_offsets()[0]) == (target["forget_efficacy"], target["model_utility"])
    assert sorted(t.get_text() for t in ax.texts) == sorted(r["label"] for r in final)
    assert "GA+GD (failed)" in " ".join(t.get_text() for t in fig.texts)
    assert (tmp_path / "mu_fe.png").read_bytes()[:8] == PNG_MAGIC


def test_mu_fe_several_runs_marker_per_run_colour_per_method(results, tmp_path):
    import copy
    second = copy.deepcopy(results)
    second["run_name"] = "other"
    for row in second["rows"]:
        if row["method"] is not None and row["status"] == "ok":
            row["aggregates"]["forget_efficacy"] /= 2  # same target, other method points
    fig = plot_mu_fe([results, second], tmp_path / "mu_fe.png")
    ax = fig.axes[0]
    ok = [r for r in results["rows"] if r["epoch"] is None and r["task"] is None and r["status"] == "ok"]
    methods = [r for r in ok if r["method"] is not None]
    stars = [c for c in ax.collections if c.get_label() == "target"]
    assert len(stars) == 1  # both runs share the target: drawn once
    assert len(ax.collections) == 1 + 2 * len(methods)
    assert [t.get_text() for t in ax.texts] == ["target"]  # methods are in the legend instead
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:len(methods)] == [r["method"] for r in methods] and legend[-2:] == [results["run_name"], "other"]
    a = next(c for c in ax.collections if c.get_label() == f"{results['run_name']}:{methods[0]['label']}")
    b = next(c for c in ax.collections if c.get_label() == f"other:{methods[0]['label']}")
    va, vb = a.get_paths()[0].vertices, b.get_paths()[0].vertices
    assert va.shape != vb.shape or not (va == vb).all()  # a circle for one run, a square for the other
    assert tuple(a.get_facecolor()[0]) == tuple(b.get_facecolor()[0])  # one colour per method


def test_heatmap_annotates_every_cell(results, tmp_path):
    fig = plot_heatmap(results, tmp_path / "heat.png")
    texts = [t.get_text() for t in fig.axes[0].texts]
    for row in results["rows"]:
        if row["status"] == "ok" and row["epoch"] is None:
            for s in SETS:
                for m in METRICS:
                    assert f"{row['sets'][s][m]:.2f}" in texts
    assert (tmp_path / "heat.png").read_bytes()[:8] == PNG_MAGIC


def test_dynamics_and_continual(results, tmp_path):
    fig = plot_dynamics(results, tmp_path / "dyn.png")
    mu_ax, fe_ax = fig.axes[:2]
    line = next(ln for ln in mu_ax.lines if ln.get_label() == "ME+GD")
    rows = [r for r in results["rows"] if r["label"].startswith("ME+GD/epoch")]
    assert list(line.get_xdata()) == [1, 2, 3]
    assert list(line.get_ydata()) == [r["aggregates"]["model_utility"] for r in rows]
    assert plot_continual(results, tmp_path / "cont.png") is None and not (tmp_path / "cont.png").exists()
    cont = load_results(make_run(tmp_path, "seq", seed=1, continual=True))
    fig = plot_continual(cont, tmp_path / "cont.png")
    rows = [r for r in cont["rows"] if r["label"].startswith("IDK+AP/task")]
    for ax, key in zip(fig.axes[:3], ("model_utility", "mu_retain", "forget_efficacy")):
        line = next(ln for ln in ax.lines if ln.get_label() == "IDK+AP")
        assert list(line.get_ydata()) == [r["aggregates"][key] for r in rows]
    assert plot_dynamics(cont, None) is None
    assert (tmp_path / "cont.png").read_bytes()[:8] == PNG_MAGIC


def test_missing_or_bad_results_json(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnlearnError, match="results.json") as err:
        build_report([tmp_path / "empty"])
    assert str(tmp_path / "empty") in str(err.value) and "\n" not in str(err.value)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.json").write_text('{"rows": [')
    with pytest.raises(UnlearnError, match=re.escape(str(bad / "results.json"))):
        load_results(bad)
    (bad / "results.json").write_text('{"rows": [{"method": "x"}]}')
    with pytest.raises(UnlearnError, match=r"rows\[0\] has no 'label'"):
        load_results(bad)


def test_build_report_single_and_combined(run_dir, tmp_path):
    console = Console(record=True, width=160)
    paths = build_report([run_dir], console=console)
    assert set(paths) == {"csv", "markdown", "html", "mu_fe", "heatmap", "dynamics"}
    assert all(p.parent in (run_dir, run_dir / "figures") and p.exists() for p in paths.values())
    assert all(paths[k].read_bytes()[:8] == PNG_MAGIC for k in ("mu_fe", "heatmap", "dynamics"))
    assert "held-out accuracy 0.930" in paths["markdown"].read_text()
    text = console.export_text()
    mu = load_results(run_dir)["rows"][1]["aggregates"]["model_utility"]
    assert "failed: NaN loss at step 12" in text and fmt(mu) in text and "set: world_facts" in text
    other = make_run(tmp_path, "second", seed=3)
    paths = build_report([run_dir, other], console=Console(quiet=True))
    assert paths["html"] == tmp_path / "report" / "report.html"
    labels = [r["label"] for r in csv.DictReader(paths["csv"].read_text().splitlines())]
    assert "demo:target" in labels and "second:ME+GD/epoch3" in labels
    page = paths["html"].read_text()
    assert page.count("Entailment score (ES) judge") == 2 and "Sample answers: second" in page


def test_real_world_run_samples_neighbor_set(tmp_path):
    run = make_run(tmp_path, "rw", sets=("forget", "neighbor"))
    paths = build_report([run], console=Console(quiet=True))
    page = paths["html"].read_text()
    assert "neighbor set" in page and "ME+GD says &lt;neighbor question 2&gt;" in page
    header = paths["csv"].read_text().splitlines()[0].split(",")
    assert "neighbor/entailment" in header and not any(c.startswith("retain/") for c in header)


def test_print_table_alone(results):
    print_table(results, console := Console(record=True, width=120))
    text = console.export_text()
    header = [c for c in next(line for line in text.splitlines() if " TR " in line).split() if c != "┃"]
    assert header == ["label", "R", "P", "TR", "TE", "CS", "ES", "EM", "XS"] and "offline MiniLM cross-encoder" in text
    assert "ME+GD/epoch1" in text.split("set: forget")[0] and "ME+GD/epoch1" not in text.split("set: forget")[1]


CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_html_renders_in_headless_chromium(run_dir, tmp_path):
    html = write_html([load_results(run_dir)], [run_dir], tmp_path / "report.html")
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--enable-logging=stderr", "--v=0"]
    shot = tmp_path / "shot.png"
    run = subprocess.run(flags + [f"--user-data-dir={tmp_path / 'prof1'}", f"--screenshot={shot}",
                                  "--window-size=1200,2000", html.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert shot.is_file() and shot.read_bytes()[:8] == PNG_MAGIC, run.stderr[-2000:]
    dom = subprocess.run(flags + [f"--user-data-dir={tmp_path / 'prof2'}", "--dump-dom", html.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert '<table class="aggregates">' in dom.stdout and '<table class="sets">' in dom.stdout
    assert "NaN loss at step 12" in dom.stdout
    for stderr in (run.stderr, dom.stderr):
        assert "Uncaught" not in stderr and "ERROR:CONSOLE" not in stderr


def test_mu_fe_labels_of_close_points_do_not_overlap():
    from unlearnlm.reports.figures import _label_offset

    placed: list = []
    offsets = [_label_offset(placed, 0.56, 0.0, name) for name in ("NPO", "NPO+GD", "NPO+KL")]
    assert len(set(offsets)) == 3 and min(offsets) > 0  # stacked upwards, never under MU = 0
    boxes = placed
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
    assert _label_offset([], 0.5, 0.5, "ME+GD") == 5  # a lone label sits just above its point


def test_intervals_reach_the_csv_the_markdown_and_the_html(results, run_dir, tmp_path):
    results = json.loads(json.dumps(results))
    ok = next(r for r in results["rows"] if r["status"] == "ok")
    ok["intervals"] = {"model_utility": [0.125, 0.875], "forget_efficacy": [0.5, 0.75]}
    table = results_table(results)
    flat = next(r for r in table if r["label"] == ok["label"])
    assert (flat["MU_lo"], flat["MU_hi"], flat["FE_lo"], flat["FE_hi"]) == (0.125, 0.875, 0.5, 0.75)
    assert flat["FQ_lo"] is None and flat["FQ_hi"] is None
    parsed = {r["label"]: r for r in csv.DictReader(write_csv(table, tmp_path / "r.csv").read_text().splitlines())}
    assert float(parsed[ok["label"]]["MU_hi"]) == 0.875
    md = render_markdown(table)
    line = next(l for l in md.splitlines() if l.startswith(f"| {ok['label']} |"))
    assert f"{fmt(ok['aggregates']['model_utility'])} [0.125, 0.875]" in line
    assert "MU_lo" not in md.splitlines()[0]
    page = write_html([results], [run_dir], tmp_path / "report.html").read_text()
    assert '<span class="ci">[0.125, 0.875]</span>' in page and '<span class="ci">[0.500, 0.750]</span>' in page
    print_table(results, console := Console(record=True, width=200))
    line = next(l for l in console.export_text().splitlines() if l.lstrip().startswith(ok["label"] + " "))
    assert f"{fmt(ok['aggregates']['model_utility'])} [0.125, 0.875]" in line


def test_mu_fe_error_bars_span_the_intervals(results):
    results = json.loads(json.dumps(results))
    row = next(r for r in results["rows"] if r["status"] == "ok" and r["epoch"] is None and r["method"])
    fe, mu = row["aggregates"]["forget_efficacy"], row["aggregates"]["model_utility"]
    row["intervals"] = {"forget_efficacy": [fe - 0.05, fe + 0.1], "model_utility": [mu - 0.2, mu + 0.03]}
    ax = plot_mu_fe(results, None).axes[0]
    segments = [seg for c in ax.collections if type(c).__name__ == "LineCollection" for seg in c.get_segments()]
    spans = sorted((round(float(s[0][0]), 6), round(float(s[1][0]), 6), round(float(s[0][1]), 6), round(float(s[1][1]), 6))
                   for s in segments)
    assert spans == sorted([(round(fe - 0.05, 6), round(fe + 0.1, 6), round(mu, 6), round(mu, 6)),
                            (round(fe, 6), round(fe, 6), round(mu - 0.2, 6), round(mu + 0.03, 6))])
