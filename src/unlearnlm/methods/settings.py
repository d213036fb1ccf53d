"""One method resolved once: its registry entry and its settings (docs/method.md, "Options").

    resolved = resolve_method(cfg.unlearn, "SimNPO+GD")
    resolved.method             # the Method (losses, parts, needs)
    resolved.settings.forget_coeff   # 0.125: unlearn.per_method, else unlearn.*, else the method's default

Settings = ``unlearn.*``, then ``unlearn.per_method[name]``, then the method's defaults for the
options still unset (None). ``method_errors`` checks the result with the same rules as the
global options, so a bad per-method value is reported at config time with its full key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from unlearnlm.config.schema import UnlearnConfig
from unlearnlm.errors import ConfigError
from unlearnlm.methods.registry import Method, get_method

TRAIN_KEYS = ("lr", "epochs")  # per-method overrides of unlearn.train.*


@dataclass(frozen=True)
class ResolvedMethod:
    method: Method
    settings: UnlearnConfig  # method=name, per_method={}, every method option set

    @property
    def name(self) -> str:
        return self.settings.method


def resolve_method(ucfg: UnlearnConfig, name: str) -> ResolvedMethod:
    method = get_method(name)
    over = dict(ucfg.per_method.get(name, {}))
    train = dataclasses.replace(ucfg.train, **{k: over.pop(k) for k in TRAIN_KEYS if k in over})
    settings = dataclasses.replace(ucfg, method=name, train=train, per_method={}, **over)
    unset = {k: v for k, v in method.defaults.items() if getattr(settings, k) is None}
    return ResolvedMethod(method, dataclasses.replace(settings, **unset))


def method_errors(ucfg: UnlearnConfig, name: str, where: str) -> list[str]:
    """Problems of one method's settings: its name, its overrides' values (named by their full
    key; the global options are checked once by ``validate``) and the options it requires."""
    from unlearnlm.config.load import unlearn_errors

    try:
        resolved = resolve_method(ucfg, name)
    except ConfigError as e:
        return [f"{where}: {e}"]
    over = ucfg.per_method.get(name, {})
    errors = unlearn_errors(resolved.settings, f"unlearn.per_method.{name}.", only=set(over))
    for spec in resolved.method.specs:
        for option in spec.required:
            if getattr(resolved.settings, option) is None:
                errors.append(f"unlearn.{option}: {name} needs it set ({spec.description})")
    return errors
