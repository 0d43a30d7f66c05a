"""YAML or dict values onto a config dataclass, every failure one ConfigError naming the key: shared by the run's
config and by stages built in Python."""

from __future__ import annotations

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dharma_train.cli.suggestions import close_paths, did_you_mean, flat_keys
from dharma_train.errors import ConfigError


def typed(prefix: str, schema: type, values: dict):
    """Merge values onto a dataclass schema; unknown keys, wrong types and failed checks become ConfigError."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    except OmegaConfBaseException as error:
        key = f"{prefix}.{error.full_key}" if error.full_key else prefix
        meant = _suggestion(prefix, schema, error)
        raise ConfigError(f"config key '{key}': {error.msg.splitlines()[0]}{meant}") from None
    except ValueError as error:
        raise ConfigError(f"config '{prefix}': {error}") from None


def _suggestion(prefix: str, schema: type, error: OmegaConfBaseException) -> str:
    """For a key the schema lacks: the schema's keys spelled like it."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if not isinstance(error, (ConfigKeyError, ConfigAttributeError)) or not error.full_key:
        return ""
    known = flat_keys(OmegaConf.to_container(OmegaConf.structured(schema)))
    return did_you_mean([f"{prefix}.{key}" for key in close_paths(str(error.full_key), known)])
