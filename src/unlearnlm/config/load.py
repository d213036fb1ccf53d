"""Build a validated ``RunConfig`` from a YAML preset plus ``key=value`` overrides.

    cfg = load_config("demo", ["unlearn.train.lr=5e-5", "methods=[ME+GD]"])

A preset may name one parent with ``base: <preset>`` (one level of inclusion). All errors
(unknown keys with "did you mean", bad values) are collected and raised together.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from unlearnlm.config.schema import SCENARIOS, SPLITS, TRACKING_KEYS, ModelConfig, RunConfig, TrainConfig, UnlearnConfig
from unlearnlm.config.retired import RETIRED
from unlearnlm.errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options at the top level")
    return data


def _preset_path(name_or_path: str, relative_to: Path | None = None) -> Path:
    """A built-in preset's file, or a .yaml path (a relative ``base:`` path is looked up next
    to the file that names it first, then from the working directory)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        candidates = [path]
        if relative_to is not None and not path.is_absolute():
            candidates.insert(0, relative_to / path)
        for c in candidates:
            if c.is_file():
                return c
        raise ConfigError(f"preset file {name_or_path!r} not found (tried {', '.join(map(str, candidates))})")
    builtin = PRESET_DIR / f"{name_or_path}.yaml"
    if builtin.is_file():
        return builtin
    close = difflib.get_close_matches(name_or_path, preset_names(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"unknown preset {name_or_path!r}{hint} Built-in presets: {', '.join(preset_names())}; "
        "or pass a path to a .yaml file"
    )


def deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def preset_dict(name_or_path: str) -> dict:
    path = _preset_path(name_or_path)
    data = _read_yaml(path)
    parent = data.pop("base", None)
    if parent is not None:
        if not isinstance(parent, str) or not parent.strip():
            raise ConfigError(f"{path}: base must be a preset name or a .yaml path, got {parent!r}")
        parent_data = _read_yaml(_preset_path(parent, relative_to=path.parent))
        if "base" in parent_data:
            raise ConfigError(f"{path}: its base {parent!r} has a base too; one level of inclusion only")
        data = deep_merge(parent_data, data)
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
        for i, p in enumerate(parts[:-1]):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(
                    f"override {item!r} conflicts with the earlier override {'.'.join(parts[: i + 1])}={node!r}"
                )
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
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            errors.append(f"{where}: expected a mapping, got {value!r}")
            return value
        args = typing.get_args(tp)
        if not args:
            return value
        key_tp, val_tp = args
        return {
            (str(k) if key_tp is str else k): _coerce(v, val_tp, f"{where}.{k}", errors) for k, v in value.items()
        }
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
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
        errors.append(f"{where}: expected a {'finite ' if number is not None else ''}number, got {value!r}")
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
        if where in RETIRED:
            errors.append(f"option {where!r} was {RETIRED[where]}")
            continue
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
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
    elif any(not str(t).strip() for t in cfg.data.tasks) or len(set(cfg.data.tasks)) < len(cfg.data.tasks):
        errors.append(f"data.tasks: task ids must be non-empty and each listed once, got {cfg.data.tasks!r}")
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
        if not isinstance(train.bf16, bool) and train.bf16 != "auto":
            errors.append(f"{name}.bf16: expected auto, true or false, got {train.bf16!r}")
        errors += _report_to_errors(f"{name}.report_to", train.report_to)
    errors += unlearn_errors(cfg.unlearn, only=set(_UNLEARN_CHECKS) - {"lr", "epochs"})  # those: above
    if cfg.unlearn.trainable is not None and cfg.unlearn.train.lora:
        errors.append("unlearn.trainable: cannot be combined with unlearn.train.lora=true (LoRA trains its adapters)")
    if cfg.finetune.retain_rows is not None and cfg.finetune.retain_rows < 0:
        errors.append(f"finetune.retain_rows: must be >= 0, got {cfg.finetune.retain_rows}")
    if cfg.finetune.check_size < 0:
        errors.append(f"finetune.check_size: must be >= 0, got {cfg.finetune.check_size}")
    if cfg.finetune.check_max_new_tokens < 1:
        errors.append(f"finetune.check_max_new_tokens: must be >= 1, got {cfg.finetune.check_max_new_tokens}")
    e = cfg.eval
    if not isinstance(e.bf16, bool) and e.bf16 not in ("auto", "weights"):
        errors.append(f"eval.bf16: expected auto, true, false or weights, got {e.bf16!r}")
    for f in ("ds_size", "max_new_tokens", "batch_size"):
        if getattr(e, f) < 1:
            errors.append(f"eval.{f}: must be >= 1, got {getattr(e, f)}")
    if e.bootstrap_resamples < 0:
        errors.append(f"eval.bootstrap_resamples: must be >= 0 (0 = no intervals), got {e.bootstrap_resamples}")
    if e.lm_eval_limit < 0:
        errors.append(f"eval.lm_eval_limit: must be >= 0 (0 = all), got {e.lm_eval_limit}")
    if any(not str(t).strip() for t in e.lm_eval_tasks) or len(set(e.lm_eval_tasks)) < len(e.lm_eval_tasks):
        errors.append(f"eval.lm_eval_tasks: task names must be non-empty and each listed once, got {e.lm_eval_tasks!r}")
    from unlearnlm.attacks.registry import attack_errors  # both import torch: only when checking
    from unlearnlm.evaluation.aggregates import metric_errors

    errors += metric_errors(e.metrics) + attack_errors(cfg)
    if not cfg.methods:
        errors.append("methods: at least one method is needed (see `unlearnlm methods`)")
    if len(set(cfg.seeds)) < len(cfg.seeds) or any(s < 0 for s in cfg.seeds):
        errors.append(f"seeds: non-negative integers, each listed once, got {cfg.seeds!r}")
    if cfg.model.retain and cfg.scenario != "fictitious":
        errors.append(f"model.retain: Forget Quality is measured in the fictitious scenario only, not {cfg.scenario}")
    return errors


def _report_to_errors(key: str, value: str) -> list[str]:
    names = [r.strip() for r in value.split(",") if r.strip()]
    if names in ([], ["none"], ["all"]):
        return []
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK  # only when asked

    unknown = [n for n in names if n not in INTEGRATION_TO_CALLBACK]
    return [f"{key}: unknown integration {', '.join(unknown)} (known: none, {', '.join(INTEGRATION_TO_CALLBACK)})"] \
        if unknown else []


def load_config(preset: str | None = "demo", overrides: list[str] | tuple = ()) -> RunConfig:
    return config_from_dict(preset_dict(preset) if preset else {}, overrides)


def config_from_dict(data: dict, overrides: list[str] | tuple = ()) -> RunConfig:
    """A checked config from option values (a preset's, a run's config.json) and overrides."""
    data = deep_merge(data, parse_overrides(list(overrides)))
    errors: list[str] = []
    cfg = _build(RunConfig, data, "", errors)
    if not errors:
        errors = validate(cfg) + _validate_methods(cfg)
    if errors:
        raise ConfigError("; ".join(errors) if len(errors) > 1 else errors[0])
    return cfg


def _validate_methods(cfg: RunConfig) -> list[str]:
    from unlearnlm.methods.settings import method_errors  # the registry imports torch: keep it lazy

    errors = _per_method_errors(cfg.unlearn)
    if errors:
        return errors
    named = [("unlearn.method", cfg.unlearn.method), *((f"methods[{i}]", m) for i, m in enumerate(cfg.methods)),
             *((f"unlearn.per_method.{m}", m) for m in cfg.unlearn.per_method)]
    for where, name in named:
        errors += [e for e in method_errors(cfg.unlearn, name, where) if e not in errors]
    return errors


def _positive(v) -> bool:
    return v > 0


def _non_negative(v) -> bool:
    return v >= 0


def _regex(v) -> bool:
    try:
        re.compile(v)
    except re.error:
        return False
    return True


# Value rules of the unlearning options (None always passes: "the default"). ``lr`` and
# ``epochs`` are the per-method overrides of unlearn.train.
_UNLEARN_CHECKS = {
    "lr": (_positive, "must be > 0"), "epochs": (_positive, "must be > 0"),
    "forget_coeff": (_non_negative, "must be >= 0"), "reg_coeff": (_non_negative, "must be >= 0"),
    "me_direction": (lambda v: v in ("p_u", "u_p"), "must be p_u (KL(P||U), paper) or u_p (KL(U||P))"),
    "retain_set": (lambda v: v in ("tofu", "target_data"), "must be tofu or target_data"),
    "trainable": (_regex, "must be a valid regular expression"),
    **{k: (_positive, "must be > 0") for k in ("beta", "simnpo_beta", "rmu_coeff")},
    **{k: (_non_negative, "must be >= 0") for k in ("undial_beta", "wga_beta", "satimp_beta1", "satimp_beta2",
                                                    "rmu_layer", "pdu_lambda0", "pdu_eta", "pdu_dual_warmup_epochs",
                                                    "loss_chunk_size")},
}


def unlearn_errors(u: UnlearnConfig, prefix: str = "unlearn.", only=None) -> list[str]:
    """Value problems of unlearning options, as ``<prefix><option>: ...``; ``only``: these keys."""
    errors = []
    for key, (ok, message) in _UNLEARN_CHECKS.items():
        if only is not None and key not in only:
            continue
        value = getattr(u.train, key) if key in ("lr", "epochs") else getattr(u, key)
        if value is not None and not ok(value):
            errors.append(f"{prefix}{key}: {message}, got {value!r}")
    return errors


def _per_method_errors(u: UnlearnConfig) -> list[str]:
    """``unlearn.per_method``: known option names and right types (coerced in place)."""
    train_keys = ("lr", "epochs")
    hints = typing.get_type_hints(UnlearnConfig)
    train_hints = typing.get_type_hints(TrainConfig)
    allowed = sorted(({f.name for f in dataclasses.fields(UnlearnConfig)} - {"method", "train", "per_method"})
                     | set(train_keys))
    errors: list[str] = []
    for name, over in u.per_method.items():
        for key in list(over):
            where = f"unlearn.per_method.{name}.{key}"
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                errors.append(f"{where}: unknown option{hint} Valid: {', '.join(allowed)}")
                continue
            trial: list[str] = []
            value = _coerce(over[key], train_hints[key] if key in train_keys else hints[key], where, trial)
            errors += trial
            if not trial:
                over[key] = value
    return errors


def model_key_options(model: ModelConfig) -> dict:
    """The model options that change what a fine-tuned or evaluated model is (cache keys):
    not the cache location (kept as None, so keys made before it existed do not move), and not
    ``target``/``retain``, which name the models themselves."""
    options = config_to_dict(model) | {"cache_dir": None}
    return {k: v for k, v in options.items() if k not in ("target", "retain")}


def result_train_options(train: dict) -> dict:
    """A TrainConfig dict without the options that change no result (``TRACKING_KEYS``)."""
    return {k: v for k, v in train.items() if k not in TRACKING_KEYS}


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)
