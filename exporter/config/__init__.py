"""Configuration: one YAML file, validated at start with errors that name the field.

Every problem raises ConfigError whose message is one line: the dotted path of
the field (and the file line where YAML reports one) and what is wrong. The
CLI prints it and exits 2; nothing here ever lets a traceback reach the user.

The schema is declared once, in `settings`; `schema` holds its building blocks,
`scalars` the field types, `loading` the file and the printout, `reference` the
README's table (`python -m llm_cost_exporter.config` prints it).
"""

from llm_cost_exporter.config.errors import ConfigError
from llm_cost_exporter.config.loading import (
    apply_overrides,
    config_from_mapping,
    effective_config_dict,
    load_yaml,
    money_defaults,
    read_config,
)
from llm_cost_exporter.config.scalars import parse_currency, parse_duration, split_listen_address
from llm_cost_exporter.config.settings import (
    DEFAULT_ENGINE_URL,
    DEFAULT_LISTEN_ADDRESS,
    DEFAULT_WINDOWS,
    LOG_LEVELS,
    TOKEN_MIX_TOLERANCE,
    ApiPriceConfig,
    CapacityConfig,
    Config,
    CostConfig,
    DiscoveryConfig,
    EngineConfig,
    GpuGroup,
    KubernetesConfig,
    LimitsConfig,
    ModelPrice,
    NvmlConfig,
    OwnedHardware,
    PodResourcesConfig,
    Projection,
)

__all__ = [
    "DEFAULT_ENGINE_URL",
    "DEFAULT_LISTEN_ADDRESS",
    "DEFAULT_WINDOWS",
    "LOG_LEVELS",
    "TOKEN_MIX_TOLERANCE",
    "ApiPriceConfig",
    "CapacityConfig",
    "Config",
    "ConfigError",
    "CostConfig",
    "DiscoveryConfig",
    "EngineConfig",
    "KubernetesConfig",
    "GpuGroup",
    "LimitsConfig",
    "ModelPrice",
    "NvmlConfig",
    "PodResourcesConfig",
    "OwnedHardware",
    "Projection",
    "apply_overrides",
    "config_from_mapping",
    "effective_config_dict",
    "load_yaml",
    "money_defaults",
    "read_config",
    "parse_currency",
    "parse_duration",
    "split_listen_address",
]
