"""Build a validated ``RunConfig`` from a YAML preset plus ``key=value`` overrides.

    cfg = load_config("demo", ["unlearn.train.lr=5e-5", "methods=[ME+GD]"])

A preset may name one parent with ``base: <preset>`` (one level of inclusion). All errors
(unknown keys with "did you mean", bad values) are collected and raised together.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from unlearnlm.config.schema import SCENARIOS, SPLITS, RunConfig
from unlearnlm.errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options at the top level")
    return data


def _preset_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    builtin = PRESET_DIR / f"{name_or_path}.yaml"
    if builtin.is_file():
        return builtin
    close = difflib.get_close_matches(name_or_path, preset_names(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"unknown preset {name_or_path!r}{hint} Built-in presets: {', '.join(preset_names())}; "
        "or pass a path to a .yaml file"
    )


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def preset_dict(name_or_path: str) -> dict:
    path = _preset_path(name_or_path)
    data = _read_yaml(path)
    parent = data.pop("base", None)
    if parent is not None:
        parent_data = _read_yaml(_preset_path(parent))
        if "base" in parent_data:
            raise ConfigError(f"{path}: its base {parent!r} has a base too; one level of inclusion only")
        data = _merge(parent_data, data)
    return data


def parse_overrides(overrides: list[str]) -> dict:
    """``a.b=value`` strings to a nested dict; values are parsed as YAML (numbers, lists...)."""
    out: dict = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. unlearn.train.lr=1e-5)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _coerce(value: Any, tp: Any, where: str, errors: list[str]) -> Any:
    """Check/convert ``value`` to annotation ``tp``; append a message on failure."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            trial: list[str] = []
            out = _coerce(value, arg, where, trial)
            if not trial:
                return out
        errors.append(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, (str, int, float)) and item_tp is str:
            value = [value]
        if not isinstance(value, list):
            errors.append(f"{where}: expected a list, got {value!r}")
            return value
        return [_coerce(v, item_tp, f"{where}[{i}]", errors) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{where}: expected a mapping, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        errors.append(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        errors.append(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        errors.append(f"{where}: expected a number, got {value!r}")
        return value
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str):
            return value
        errors.append(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _build(cls: type, data: dict, prefix: str, errors: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            errors.append(f"unknown option {where!r}{hint} Valid: {', '.join(names)}")
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                errors.append(f"{where}: expected a mapping of {tp.__name__} options, got {value!r}")
                continue
            kwargs[key] = _build(tp, value, f"{where}.", errors)
        else:
            kwargs[key] = _coerce(value, tp, where, errors)
    return cls(**kwargs)


def validate(cfg: RunConfig) -> list[str]:
    """Value checks that types alone cannot express."""
    errors = []
    if cfg.scenario not in SCENARIOS:
        errors.append(f"scenario: {cfg.scenario!r} is not one of {', '.join(SCENARIOS)}")
    if cfg.data.split not in SPLITS:
        errors.append(f"data.split: {cfg.data.split!r} is not one of {', '.join(SPLITS)}")
    if not cfg.data.tasks:
        errors.append("data.tasks: at least one task id is needed (e.g. data.tasks=[1])")
    if cfg.model.prompt_format not in ("auto", "chat", "plain", "custom"):
        errors.append(f"model.prompt_format: {cfg.model.prompt_format!r} is not one of auto, chat, plain, custom")
    for name, train in (("finetune.train", cfg.finetune.train), ("unlearn.train", cfg.unlearn.train)):
        if train.lr <= 0:
            errors.append(f"{name}.lr: must be > 0, got {train.lr}")
        if train.epochs <= 0:
            errors.append(f"{name}.epochs: must be > 0, got {train.epochs}")
        for f in ("batch_size", "grad_accum", "max_length", "lora_r"):
            if getattr(train, f) < 1:
                errors.append(f"{name}.{f}: must be >= 1, got {getattr(train, f)}")
        if train.weight_decay < 0 or train.warmup_epochs < 0:
            errors.append(f"{name}: weight_decay and warmup_epochs must be >= 0")
        if str(train.bf16) not in ("auto", "true", "false", "True", "False"):
            errors.append(f"{name}.bf16: expected auto, true or false, got {train.bf16!r}")
    u = cfg.unlearn
    if u.beta <= 0:
        errors.append(f"unlearn.beta: must be > 0, got {u.beta}")
    if u.forget_coeff < 0 or u.reg_coeff < 0:
        errors.append("unlearn.forget_coeff and unlearn.reg_coeff must be >= 0")
    if u.me_direction not in ("p_u", "u_p"):
        errors.append(f"unlearn.me_direction: {u.me_direction!r} is not p_u (KL(P||U), paper) or u_p (KL(U||P))")
    if u.retain_set not in ("tofu", "target_data"):
        errors.append(f"unlearn.retain_set: {u.retain_set!r} is not tofu or target_data")
    if cfg.finetune.retain_rows is not None and cfg.finetune.retain_rows < 0:
        errors.append(f"finetune.retain_rows: must be >= 0, got {cfg.finetune.retain_rows}")
    e = cfg.eval
    for f in ("ds_size", "max_new_tokens", "batch_size"):
        if getattr(e, f) < 1:
            errors.append(f"eval.{f}: must be >= 1, got {getattr(e, f)}")
    if e.mmlu_size < 0:
        errors.append(f"eval.mmlu_size: must be >= 0, got {e.mmlu_size}")
    if not cfg.methods:
        errors.append("methods: at least one method is needed (see `unlearnlm methods`)")
    return errors


def load_config(preset: str | None = "default", overrides: list[str] | tuple = ()) -> RunConfig:
    data = preset_dict(preset) if preset else {}
    data = _merge(data, parse_overrides(list(overrides)))
    errors: list[str] = []
    cfg = _build(RunConfig, data, "", errors)
    if not errors:
        errors = validate(cfg) + _validate_methods(cfg)
    if errors:
        raise ConfigError("; ".join(errors) if len(errors) > 1 else errors[0])
    return cfg


def _validate_methods(cfg: RunConfig) -> list[str]:
    from unlearnlm.methods.registry import get_method  # registry imports torch: keep it lazy

    errors = []
    for name in [cfg.unlearn.method, *cfg.methods, *cfg.unlearn.per_method]:
        try:
            get_method(name)
        except ConfigError as e:
            errors.append(f"method: {e}")
    allowed = {f.name for f in dataclasses.fields(type(cfg.unlearn))} - {"method", "train", "per_method"}
    for name, over in cfg.unlearn.per_method.items():
        for key in over:
            if key not in allowed | {"lr", "epochs"}:
                errors.append(f"unlearn.per_method.{name}.{key}: unknown option; valid: {', '.join(sorted(allowed | {'lr', 'epochs'}))}")
    return errors


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)
