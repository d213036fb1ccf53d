"""Configuration: typed defaults (schema), YAML presets and key=value overrides (load)."""
from unlearnlm.config.load import config_to_dict, load_config, preset_names
from unlearnlm.config.schema import (
    DataConfig,
    EvalConfig,
    FinetuneConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    UnlearnConfig,
)

__all__ = [
    "DataConfig", "EvalConfig", "FinetuneConfig", "ModelConfig", "RunConfig", "TrainConfig",
    "UnlearnConfig", "config_to_dict", "load_config", "preset_names",
]
