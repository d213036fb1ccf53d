"""Run directories: created once per config, refused if they hold a different run.

    RUN_DIR/config.json      the full resolved config
    RUN_DIR/manifest.json    seed, package versions, hardware, data checksums
    RUN_DIR/models/<label>/  unlearned models (plain HF folders)
    RUN_DIR/eval/<label>/    per-example and per-set results
    RUN_DIR/results.json     one row per evaluated model (read by ``unlearnlm report``)
"""
from __future__ import annotations

import os
from pathlib import Path

from unlearnlm.config.load import config_to_dict, deep_merge, result_train_options
from unlearnlm.config.retired import migrate_retired
from unlearnlm.config.schema import RunConfig
from unlearnlm.data.bundle import content_checksums
from unlearnlm.data.loading import data_source
from unlearnlm.errors import ConfigError
from unlearnlm.io import read_json, write_json
from unlearnlm.training.manifest import environment_info

# Options that do not change results: a run may be resumed with other values.
NON_RESULT_KEYS = {"output_dir", "methods", "seeds"}


def _result_config(cfg_dict: dict) -> dict:
    """The options that change results; an option newer than the file takes its default (new
    options default to the old behaviour), so a run written before it resumes."""
    full = deep_merge(config_to_dict(RunConfig()), migrate_retired(cfg_dict))
    for job in ("finetune", "unlearn"):
        full[job]["train"] = result_train_options(full[job]["train"])
    for key in ("attacks", "attack"):  # attacks may be added to a finished run; their folders record their settings
        full["eval"].pop(key, None)
    return {k: v for k, v in full.items() if k not in NON_RESULT_KEYS}


def safe_label(label: str) -> str:
    """A label usable as one folder name inside the run directory (no separators, no ..)."""
    cleaned = "".join(c if c.isalnum() or c in "+-_.=" else "_" for c in label).strip(".")
    if not cleaned:
        raise ConfigError(f"label {label!r} gives an empty folder name")
    return cleaned


def open_run_dir(cfg: RunConfig) -> Path:
    """Create (or reopen for resuming) ``output_dir/run_name``; write config and manifest."""
    if os.sep in cfg.run_name or cfg.run_name in ("", ".", "..") or (os.altsep and os.altsep in cfg.run_name):
        raise ConfigError(f"run_name: {cfg.run_name!r} must be a plain folder name (no path separators)")
    run_dir = Path(cfg.output_dir) / cfg.run_name
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"output_dir: cannot create {run_dir} ({e.strerror})") from None
    if not os.access(run_dir, os.W_OK):
        raise ConfigError(f"output_dir: {run_dir} is not writable; choose another output_dir")
    cfg_dict = config_to_dict(cfg)
    existing = run_dir / "config.json"
    if existing.is_file():
        try:
            old = read_json(existing)
        except ValueError:
            old = None
        if old is None or _result_config(old) != _result_config(cfg_dict):
            raise ConfigError(
                f"output_dir: {run_dir} already holds a different run (its config.json differs); "
                "choose another run_name or output_dir"
            )
    write_json(existing, cfg_dict)
    if not (run_dir / "manifest.json").is_file():
        data_dir, source = data_source(cfg.data.data_dir)
        write_json(run_dir / "manifest.json", {
            "seed": cfg.unlearn.train.seed, "environment": environment_info(),
            "data_dir": str(data_dir), "data_source": source, "data_sha256": content_checksums(data_dir),
        })
    return run_dir
