"""The data copy shipped in the package: same content as ../shared/data, checked, deterministic,
read transparently, and present in an installed wheel."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from unlearnlm.data import bundle, tofu
from unlearnlm.data.loading import DATA_DIR_ENV, read_jsonl, read_lines
from unlearnlm.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "tofu").is_dir(), reason=f"{SHARED} not present")


@needs_shared
def test_bundled_rows_are_byte_identical_to_the_shared_copy():
    shared = {str(p.relative_to(SHARED)): hashlib.sha256(p.read_bytes()).hexdigest()
              for p in sorted(SHARED.rglob("*")) if p.suffix in (".json", ".jsonl")}
    assert len(shared) == 17
    assert bundle.content_checksums(bundle.BUNDLED_DIR) == shared  # decompressed bytes
    assert bundle.read_checksums(bundle.BUNDLED_DIR) == shared     # the shipped manifest


@needs_shared
def test_build_bundle_is_deterministic(tmp_path):
    sums = bundle.build_bundle(SHARED, tmp_path)
    assert sums == bundle.read_checksums(bundle.BUNDLED_DIR)
    for name in sums:  # the same bytes as the committed .gz files: rebuilding changes nothing
        assert (tmp_path / f"{name}.gz").read_bytes() == (bundle.BUNDLED_DIR / f"{name}.gz").read_bytes()
    assert (tmp_path / bundle.CHECKSUMS).read_bytes() == (bundle.BUNDLED_DIR / bundle.CHECKSUMS).read_bytes()


def test_verify_names_a_damaged_and_a_missing_file(tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(bundle.BUNDLED_DIR, copy)
    assert bundle.verify(copy) == []
    with gzip.open(copy / "tofu" / "retain10.json.gz", "ab") as f:
        f.write(b'{"question": "q?", "answer": "a"}\n')
    (copy / "idontknow.jsonl.gz").unlink()
    assert sorted(bundle.verify(copy)) == ["idontknow.jsonl: missing",
                                           "tofu/retain10.json: sha256 differs from SHA256SUMS"]


def test_licences_and_attribution_ship_with_the_data():
    notice = (bundle.BUNDLED_DIR / bundle.NOTICE).read_text(encoding="utf-8")
    assert "MIT" in notice and "Locus Lab" in notice and "2401.06121" in notice
    assert "CC-BY-4.0" in notice and "RWKU" in notice and "2406.10890" in notice


def test_plain_and_gzip_files_read_the_same_rows(tmp_path):
    rows = [{"question": "Who?", "answer": "Me \u2028 too."}, {"question": "Why?", "answer": "So."}]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "plain.json").write_text(text, encoding="utf-8")
    (tmp_path / "packed.json.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "idk.jsonl.gz").write_bytes(gzip.compress(b"I don't know.\n\nNo idea.\n"))
    assert read_jsonl(tmp_path / "packed.json", ("question",)) == read_jsonl(tmp_path / "plain.json") == rows
    assert read_lines(tmp_path / "idk.jsonl") == ["I don't know.", "No idea."]


def test_a_damaged_gzip_is_one_data_error_naming_the_file(tmp_path):
    (tmp_path / "bad.json.gz").write_bytes(gzip.compress(b'{"question": "q"}\n')[:-6])
    with pytest.raises(DataError) as err:
        read_jsonl(tmp_path / "bad.json")
    assert str(tmp_path / "bad.json.gz") in str(err.value) and "\n" not in str(err.value)


def test_bundled_copy_gives_todays_row_counts():
    root = bundle.BUNDLED_DIR
    assert [len(tofu.task_ids(root, s)) for s in ("forget01", "forget05", "forget10", "real_world")] == [10, 10, 9, 20]
    sets = tofu.eval_sets(root, "forget01", ["1"], 10**9)
    assert {k: len(v) for k, v in sets.items()} == {"forget": 40, "retain": 400, "real_authors": 100,
                                                    "world_facts": 117}


def _run_cli(args, cwd, env_extra=None, pythonpath=None):
    env = {k: v for k, v in os.environ.items() if k != DATA_DIR_ENV} | (env_extra or {})
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    code = "import sys; from unlearnlm.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_unlearnlm_data_outside_the_repo_reports_the_bundled_copy(tmp_path):
    done = _run_cli(["data"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "(the copy bundled with unlearnlm)" in done.stdout and "17 files match SHA256SUMS" in done.stdout
    assert "forget01   10 tasks; task 1: 40 forget QA, retain set 3960 QA" in done.stdout


@pytest.mark.slow
def test_an_installed_wheel_carries_working_data(tmp_path, make_tiny_overrides):
    """``pip wheel .`` then install it (no dependencies: the test's environment has them) into a
    folder of its own, and run ``unlearnlm data`` and a tiny-model ``unlearnlm run`` from outside
    the repo with only that folder on the path: the bundled copy must be inside the wheel."""
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
                   check=True, cwd=tmp_path, capture_output=True)
    (wheel,) = wheels.glob("unlearnlm-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True,
                   capture_output=True)
    where = _run_cli(["data"], cwd=tmp_path, pythonpath=site)
    assert where.returncode == 0, where.stderr
    assert f"{site.resolve()}/unlearnlm/data/bundled" in where.stdout and "17 files match" in where.stdout
    assert "real_world 20 tasks; task 1: 20 forget QA, retain set 400 QA" in where.stdout
    run = _run_cli(["run", *make_tiny_overrides(tmp_path), "methods=[GA+GD]"], cwd=tmp_path, pythonpath=site)
    assert run.returncode == 0, run.stderr[-2000:]
    manifest = json.loads((tmp_path / "runs" / "tiny" / "manifest.json").read_text())
    assert manifest["data_dir"].startswith(str(site.resolve())) and "bundled" in manifest["data_source"]
    assert manifest["data_sha256"] == bundle.read_checksums(bundle.BUNDLED_DIR)
    rows = json.loads((tmp_path / "runs" / "tiny" / "results.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["target", "GA+GD"]
