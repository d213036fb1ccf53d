"""Bad command-line input: exit status 2, one ``error:`` line on stderr, no traceback, no work done.

The commands run in-process (``unlearnlm.cli.main``). Anything that would start real work
(judges, fine-tuning) is replaced by a stub that fails the test, so a missing early check
shows up as a test failure, never as minutes of training.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from unlearnlm.cli import main


def _work_started(*args, **kwargs):
    raise AssertionError("real work started: the bad input was not rejected early enough")


@pytest.fixture
def no_work(monkeypatch):
    """Stub everything slow that a command would call after its input checks."""
    import unlearnlm.evaluation.judges.factory as factory
    import unlearnlm.pipeline.scenarios as scenarios
    import unlearnlm.pipeline.start as start

    for module, name in ((scenarios, "load_judges"), (start, "finetune_models"),
                         (scenarios, "evaluate_model"), (scenarios, "unlearn_model"),
                         (factory, "load_judges")):
        monkeypatch.setattr(module, name, _work_started)


def _run_cli(capsys, argv: list[str]) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err + captured.out
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_missing_data_directory(capsys):
    line = _run_cli(capsys, ["data", "--data-dir", "/nonexistent"])
    assert "data directory not found" in line and "/nonexistent" in line


def test_data_command_ok(capsys, data_dir):
    assert main(["data", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^forget01\s+10 tasks; task 1: 40 forget QA, retain set 3960 QA$", out, re.M), out


def test_unknown_method(capsys, no_work, tmp_path):
    line = _run_cli(capsys, ["run", "methods=[XX]", f"output_dir={tmp_path}"])
    assert "unknown method 'XX'" in line and "methods[0]" in line
    assert not any(tmp_path.iterdir())


def test_invalid_option_value(capsys, no_work, tmp_path):
    line = _run_cli(capsys, ["run", "unlearn.train.lr=-1", f"output_dir={tmp_path}"])
    assert "unlearn.train.lr" in line and "> 0" in line


def test_unknown_option(capsys, no_work, tmp_path):
    line = _run_cli(capsys, ["run", "unlearn.betaa=1", f"output_dir={tmp_path}"])
    assert "unknown option 'unlearn.betaa'" in line and "did you mean 'unlearn.beta'" in line


def test_override_without_equals(capsys, no_work):
    line = _run_cli(capsys, ["run", "lr"])
    assert "key=value" in line


def test_unknown_preset(capsys, no_work):
    line = _run_cli(capsys, ["run", "--preset", "papr"])
    assert "did you mean 'paper'" in line


def test_eval_model_path_missing(capsys, no_work, data_dir, tmp_path, monkeypatch):
    # cmd_eval loads the judges before it resolves the model: stub them (see no_work)
    # so that a wrong --model is reported without building the offline NLI judge.
    import unlearnlm.evaluation.judges.factory as factory

    monkeypatch.setattr(factory, "load_judges", lambda *a, **k: object())
    line = _run_cli(capsys, ["eval", "--model", "/nonexistent/dir", "--data-dir", str(data_dir),
                             "--output", str(tmp_path / "out"), f"output_dir={tmp_path}"])
    assert "/nonexistent/dir" in line and "no such directory" in line


def test_eval_model_folder_without_model(capsys, no_work, data_dir, tmp_path, monkeypatch):
    import unlearnlm.evaluation.judges.factory as factory

    monkeypatch.setattr(factory, "load_judges", lambda *a, **k: object())
    empty = tmp_path / "empty_model"
    empty.mkdir()
    line = _run_cli(capsys, ["eval", "--model", str(empty), "--data-dir", str(data_dir),
                             "--output", str(tmp_path / "out"), f"output_dir={tmp_path}"])
    assert str(empty) in line and "holds no model" in line


def test_output_dir_holds_a_different_run(capsys, no_work, tmp_path):
    run_dir = tmp_path / "runs" / "x"
    run_dir.mkdir(parents=True)
    config = run_dir / "config.json"
    original = json.dumps({"run_name": "x", "scenario": "continual", "other": [1, 2]}, indent=2).encode()
    config.write_bytes(original)
    before = sorted(p.name for p in run_dir.iterdir())
    line = _run_cli(capsys, ["run", f"output_dir={tmp_path / 'runs'}", "run_name=x"])
    assert "already holds a different run" in line and str(run_dir) in line
    assert config.read_bytes() == original
    assert sorted(p.name for p in run_dir.iterdir()) == before  # no manifest, no models


def test_output_dir_with_a_broken_config_json(capsys, no_work, tmp_path):
    run_dir = tmp_path / "x"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{not json", encoding="utf-8")
    line = _run_cli(capsys, ["run", f"output_dir={tmp_path}", "run_name=x"])
    assert "already holds a different run" in line
    assert (run_dir / "config.json").read_text(encoding="utf-8") == "{not json"


@pytest.mark.parametrize("run_name", ["a/b", "..", "."])
def test_run_name_must_be_a_folder_name(capsys, no_work, tmp_path, run_name):
    line = _run_cli(capsys, ["run", f"output_dir={tmp_path}", f"run_name={run_name}"])
    assert "run_name" in line


def test_output_dir_not_writable(capsys, no_work, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root (or with CAP_DAC_OVERRIDE): a 0o500 folder is still writable")
        line = _run_cli(capsys, ["run", f"output_dir={locked}", "run_name=x"])
        assert "output_dir" in line and str(locked) in line
        assert not (locked / "x").exists()
    finally:
        locked.chmod(0o700)


def test_output_dir_not_writable_simulated(capsys, no_work, tmp_path, monkeypatch):
    """The same check where permissions cannot be taken away (root): os.access says no."""
    import unlearnlm.pipeline.rundir as rundir

    run_dir = tmp_path / "x"
    real_access = os.access
    monkeypatch.setattr(rundir.os, "access",
                        lambda p, mode, **kw: False if Path(p) == run_dir and mode == os.W_OK
                        else real_access(p, mode, **kw))
    line = _run_cli(capsys, ["run", f"output_dir={tmp_path}", "run_name=x"])
    assert "not writable" in line and str(run_dir) in line
    assert not (run_dir / "config.json").exists()


def test_output_dir_is_a_file(capsys, no_work, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    line = _run_cli(capsys, ["run", f"output_dir={afile}", "run_name=x"])
    assert "output_dir" in line and "cannot create" in line
    assert afile.read_text() == "not a folder"


def _data_command_runs(monkeypatch, fn) -> None:
    """``unlearnlm data`` calls ``fn(args)`` instead of its own command."""
    import unlearnlm.cli as cli

    parser = cli.build_parser()
    parser._subparsers._group_actions[0].choices["data"].set_defaults(fn=fn)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)


@pytest.mark.parametrize("raised", [
    OSError(28, "No space left on device"),
    RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),  # safetensors' words
])
def test_a_full_disk_is_one_line_that_says_the_run_resumes(capsys, monkeypatch, raised):
    def full_disk(args):
        raise raised

    _data_command_runs(monkeypatch, full_disk)
    assert main(["data"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no space left on device (")
    assert "run the same command again: it resumes" in err[0]


def test_other_errors_are_not_taken_for_a_full_disk(monkeypatch):
    _data_command_runs(monkeypatch, lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["data"])
