"""Presets, key=value overrides and validation: every mistake is one ConfigError naming the option."""
from __future__ import annotations

import pytest

from unlearnlm.config import RunConfig, config_to_dict, load_config, preset_names
from unlearnlm.config.load import parse_overrides, preset_dict
from unlearnlm.errors import ConfigError


def _error(preset="demo", overrides=()) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(preset, list(overrides))
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


# --------------------------------------------------------------------------- presets
def test_demo_preset_loads():
    cfg = load_config("demo")
    assert isinstance(cfg, RunConfig)
    assert cfg.run_name == "demo"
    assert cfg.finetune.retain_rows == 60
    assert cfg.unlearn.retain_set == "target_data"
    assert cfg.eval.ds_size == 20 and cfg.eval.forget_quality is False
    assert "mia_gradnorm" not in cfg.eval.metrics and "mia_min_k" in cfg.eval.metrics  # GradNorm: too slow here
    assert cfg.unlearn.train.lr == 1e-4 and isinstance(cfg.unlearn.train.lr, float)
    assert cfg.finetune.train.lr == 2e-4 and cfg.finetune.train.batch_size == 4
    assert cfg.unlearn.per_method["ME+GD"] == {
        "forget_coeff": 0.1, "mask_question": False, "me_direction": "u_p"}
    # inherited from its base (paper)
    assert cfg.unlearn.train.weight_decay == 0.01
    assert cfg.data.split == "forget01" and cfg.data.tasks == ["1"]
    assert cfg.methods == ["GA+GD", "NPO+GD", "ME+GD", "IDK+AP"]


def test_demo_methods_use_the_settings_the_grid_selected():
    """docs/results.md section 1 selects lr 1e-4 for GA+GD, NPO+GD, ME+GD and IDK+AP: the demo
    must unlearn exactly as those grid runs did (same target, same settings)."""
    from pathlib import Path

    from unlearnlm.methods.settings import resolve_method

    demo = load_config("demo")
    grid = load_config(str(Path(__file__).parents[2] / "experiments" / "grid.yaml"), ["unlearn.train.lr=1e-4"])
    assert config_to_dict(demo.finetune) == config_to_dict(grid.finetune)
    for method in demo.methods:
        assert resolve_method(demo.unlearn, method).settings == resolve_method(grid.unlearn, method).settings, method


def test_default_preset_is_demo_and_builtins_listed():
    assert config_to_dict(load_config()) == config_to_dict(load_config("demo"))
    assert {"demo", "paper"} <= set(preset_names())
    paper = load_config("paper")
    assert paper.finetune.retain_rows is None and paper.eval.ds_size == 300


def test_no_preset_gives_schema_defaults():
    assert config_to_dict(load_config(None)) == config_to_dict(RunConfig())


def test_unknown_preset_did_you_mean():
    msg = _error("dem")
    assert "unknown preset 'dem'" in msg and "did you mean 'demo'" in msg and "paper" in msg


def test_preset_file_with_base(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: paper\nrun_name: mine\neval: {ds_size: 5}\nunlearn: {train: {lr: 2.0e-5}}\n")
    cfg = load_config(str(path))
    assert cfg.run_name == "mine"
    assert cfg.eval.ds_size == 5
    assert cfg.eval.max_new_tokens == 200  # from paper
    assert cfg.unlearn.train.lr == 2e-5
    assert cfg.unlearn.train.batch_size == 4  # deep merge keeps paper's other train options
    assert "base" not in preset_dict(str(path))


def test_preset_file_relative_base_is_next_to_the_file(tmp_path, monkeypatch):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "parent.yaml").write_text("run_name: parent\neval: {ds_size: 7}\n")
    child = tmp_path / "presets" / "child.yaml"
    child.write_text("base: parent.yaml\nrun_name: child\n")
    monkeypatch.chdir(tmp_path)  # not the presets folder
    cfg = load_config(str(child))
    assert (cfg.run_name, cfg.eval.ds_size) == ("child", 7)


def test_two_level_base_chain_is_refused(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("base: demo\nrun_name: child\n")  # demo itself has base: paper
    msg = _error(str(child))
    assert "one level" in msg and "'demo'" in msg
    (tmp_path / "c.yaml").write_text("run_name: c\n")
    (tmp_path / "b.yaml").write_text(f"base: {tmp_path / 'c.yaml'}\n")
    (tmp_path / "a.yaml").write_text(f"base: {tmp_path / 'b.yaml'}\n")
    assert "one level" in _error(str(tmp_path / "a.yaml"))
    assert load_config(str(tmp_path / "b.yaml")).run_name == "c"


@pytest.mark.parametrize("text, expected", [
    ("run_name: [unclosed\n", "invalid YAML"),
    ("- a\n- b\n", "mapping of options"),
    ("base: [paper]\n", "base must be a preset name"),
    ("base: missing.yaml\n", "'missing.yaml' not found"),
    ("base: nosuchpreset\n", "unknown preset 'nosuchpreset'"),
    ("1: x\n", "unknown option '1'"),
])
def test_bad_preset_file(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert expected in _error(str(path))


def test_missing_preset_file():
    msg = _error("/nonexistent/mine.yaml")
    assert "not found" in msg and "mine.yaml" in msg


# --------------------------------------------------------------------------- overrides
def test_parse_overrides_values():
    parsed = parse_overrides([
        "methods=[ME+GD,IDK+AP]", "unlearn.train.lr=5e-5", "eval.ds_size=10", "unlearn.beta=0.5",
        "finetune.retain_rows=null", "model.system_prompt=", "unlearn.mask_question=false",
        "data.tasks=[1,2]", "run_name=a=b",
    ])
    assert parsed == {
        "methods": ["ME+GD", "IDK+AP"],
        "unlearn": {"train": {"lr": "5e-5"}, "beta": 0.5, "mask_question": False},  # YAML 1.1: 5e-5 is a string
        "eval": {"ds_size": 10},
        "finetune": {"retain_rows": None},
        "model": {"system_prompt": None},
        "data": {"tasks": [1, 2]},
        "run_name": "a=b",
    }


def test_overrides_are_typed_by_the_schema():
    cfg = load_config("demo", [
        "methods=[ME+GD,IDK+AP]", "unlearn.train.lr=5e-5", "eval.ds_size=10", "finetune.retain_rows=null",
        "data.tasks=[1,2]", "model.system_prompt=null", "unlearn.forget_coeff=2", "methods=[ME+GD,IDK+AP]",
    ])
    assert cfg.methods == ["ME+GD", "IDK+AP"]
    assert cfg.unlearn.train.lr == 5e-5 and isinstance(cfg.unlearn.train.lr, float)
    assert cfg.eval.ds_size == 10
    assert cfg.finetune.retain_rows is None
    assert cfg.data.tasks == ["1", "2"]
    assert cfg.model.system_prompt is None
    assert cfg.unlearn.forget_coeff == 2.0 and isinstance(cfg.unlearn.forget_coeff, float)
    assert cfg.unlearn.train.batch_size == 8  # untouched options keep the preset's values
    assert load_config("demo", ["methods=IDK+AP", "data.tasks=3"]).methods == ["IDK+AP"]
    assert load_config("demo", ["data.tasks=3"]).data.tasks == ["3"]


@pytest.mark.parametrize("item", ["methods", "=5", " =x"])
def test_override_not_key_value(item):
    assert "key=value" in _error("demo", [item])


def test_override_conflicting_with_earlier_scalar():
    msg = _error("demo", ["unlearn=5", "unlearn.beta=1"])
    assert "unlearn.beta=1" in msg and "conflicts" in msg


# --------------------------------------------------------------------------- validation
def test_unknown_key_did_you_mean():
    msg = _error("demo", ["unlearn.betaa=0.2"])
    assert "unknown option 'unlearn.betaa'" in msg and "did you mean 'unlearn.beta'" in msg
    msg = _error("demo", ["evl.ds_size=3"])
    assert "unknown option 'evl'" in msg and "did you mean 'eval'" in msg


def test_retired_option_names_its_replacement():
    from unlearnlm.config.retired import migrate_retired

    msg = _error("demo", ["eval.mmlu_size=100"])
    assert "'eval.mmlu_size' was replaced by lm-evaluation-harness" in msg and "eval.lm_eval_tasks=[mmlu_offline]" in msg
    old = {"eval": {"mmlu_size": 100, "ds_size": 3}}
    assert migrate_retired(old) == {"eval": {"ds_size": 3, "lm_eval_tasks": ["mmlu_offline"], "lm_eval_limit": 100}}
    assert old["eval"]["mmlu_size"] == 100  # the saved dict itself is left alone
    assert migrate_retired({"eval": {"mmlu_size": 0, "ds_size": 3}}) == {"eval": {"ds_size": 3}}


@pytest.mark.parametrize("override, option", [
    ("unlearn.train.lr=-1", "unlearn.train.lr"),
    ("unlearn.train.lr=0", "unlearn.train.lr"),
    ("unlearn.train.lr=nan", "unlearn.train.lr"),
    ("unlearn.train.lr=.inf", "unlearn.train.lr"),
    ("unlearn.train.lr=fast", "unlearn.train.lr"),
    ("unlearn.beta=0", "unlearn.beta"),
    ("eval.ds_size=0", "eval.ds_size"),
    ("eval.ds_size=2.5", "eval.ds_size"),
    ("finetune.train.batch_size=0", "finetune.train.batch_size"),
    ("data.split=forget02", "data.split"),
    ("data.tasks=[]", "data.tasks"),
    ("data.tasks=[1,1]", "data.tasks: task ids must be non-empty and each listed once"),
    ("data.tasks=['']", "data.tasks: task ids must be non-empty"),
    ("unlearn.trainable=[", "unlearn.trainable: must be a valid regular expression"),
    ("methods=[RMU+GX]", "methods[0]"),
    ("unlearn.per_method.SimNPO+GD.simnpo_gamma=x", "unlearn.per_method.SimNPO+GD.simnpo_gamma"),
    ("scenario=fiction", "scenario"),
    ("unlearn.method=MEGD", "unlearn.method"),
    ("methods=[ME+GD,XX]", "methods[1]"),
    ("unlearn.me_direction=xx", "unlearn.me_direction"),
    ("unlearn.retain_set=all", "unlearn.retain_set"),
    ("model.prompt_format=fancy", "model.prompt_format"),
    ("unlearn.mask_question=maybe", "unlearn.mask_question"),
    ("unlearn=5", "unlearn"),
    ("unlearn.per_method.ME+GD=5", "unlearn.per_method.ME+GD"),
    ("unlearn.per_method.ME+GD.lr=-1", "unlearn.per_method.ME+GD.lr"),
    ("unlearn.per_method.ME+GD.beta=abc", "unlearn.per_method.ME+GD.beta"),
    ("unlearn.per_method.ME+GD.me_direction=xx", "unlearn.per_method.ME+GD.me_direction"),
    ("unlearn.per_method.ME+GD.lrr=1", "unlearn.per_method.ME+GD.lrr"),
    ("unlearn.per_method.MEGD.lr=1", "unlearn.per_method.MEGD"),
    ("eval.lm_eval_limit=-1", "eval.lm_eval_limit"),
    ("eval.lm_eval_tasks=[arc_easy,arc_easy]", "eval.lm_eval_tasks"),
])
def test_bad_value_names_the_option(override, option):
    msg = _error("demo", [override])
    assert msg.startswith(option) or f"'{option}'" in msg, msg


def test_unknown_method_did_you_mean():
    msg = _error("demo", ["unlearn.method=MEGD"])
    assert "unlearn.method" in msg and "did you mean 'ME+GD'" in msg


def test_several_errors_reported_at_once():
    msg = _error("demo", ["unlearn.train.lr=-1", "unlearn.beta=0", "eval.ds_size=0", "data.split=forget02"])
    for option in ("unlearn.train.lr", "unlearn.beta", "eval.ds_size", "data.split"):
        assert option in msg
    msg = _error("demo", ["unlearn.betaa=1", "eval.ds_size=x", "model.nmae=a"])
    for option in ("unlearn.betaa", "eval.ds_size", "model.nmae"):
        assert option in msg


def test_per_method_values_are_typed():
    cfg = load_config("demo", ["unlearn.per_method.NPO+GD.lr=1e-4", "unlearn.per_method.NPO+GD.beta=0.2"])
    assert cfg.unlearn.per_method["NPO+GD"] == {"lr": 1e-4, "beta": 0.2}
    assert isinstance(cfg.unlearn.per_method["NPO+GD"]["lr"], float)
