"""From the command line's words to a composed config, with one-line errors (exit 2) and suggestions.

Hydra still runs the job (its output folder, logging, --cfg, --multirun); this composes the same overrides first,
so an unknown recipe, group option or key, or a value of the wrong type, stops in one line before Hydra starts.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dharma_train.cli.suggestions import close_names, close_paths, did_you_mean, flat_keys
from dharma_train.config_files import CONFIG_NAME, RECIPE_GROUP, config_dir, register_recipes
from dharma_train.errors import ConfigError

RECIPE_SUFFIXES = (".yaml", ".yml")
# Hydra options this layer leaves to Hydra untouched (composition is then checked by Hydra itself).
HYDRA_FLAGS_WITH_VALUE = {"--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn", "--cfg", "-c",
                          "--package", "-p", "--info", "-i", "--experimental-rerun"}


def is_recipe_file(word: str) -> bool:
    return "=" not in word and word.endswith(RECIPE_SUFFIXES)


def recipe_file_override(path_text: str) -> str:
    """Offer a recipe file as an option of the `recipe` group; the override that selects it (`recipe=STEM`)."""
    from hydra.core.config_store import ConfigStore

    path = Path(path_text)
    if not path.is_file():
        raise ConfigError(f"recipe file {path} does not exist")
    try:
        node = OmegaConf.load(path)
    except Exception as error:  # YAML syntax: name the file, the line and, for a key given twice, the key
        raise ConfigError(f"recipe file {path} is not valid YAML: {yaml_problem(error)}") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"recipe file {path} must hold a mapping of config keys")
    if "name" not in node:
        node.name = path.stem
    ConfigStore.instance().store(group=RECIPE_GROUP, name=path.stem, node=node, package="_global_",
                                 provider=f"file {path}")
    return f"{RECIPE_GROUP}={path.stem}"


def yaml_problem(error: Exception) -> str:
    """'duplicate key 'name' on line 6 (the mapping that starts on line 1 already has it)': PyYAML's multi-line
    message in one line, with the line of the problem (counted from 1) rather than only the mapping's."""
    import yaml

    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    line, column = error.problem_mark.line + 1, error.problem_mark.column + 1
    if error.problem and error.problem.startswith("found duplicate key "):
        key = error.problem[len("found duplicate key "):]
        opened = f" (the mapping that starts on line {error.context_mark.line + 1} already has it)" \
            if error.context_mark is not None else ""
        return f"duplicate key '{key}' on line {line}{opened}; give each key once"
    context = f"{error.context}: " if error.context else ""
    return f"{context}{error.problem} on line {line}, column {column}"


def split_words(words: list[str]) -> tuple[list[str], list[str]]:
    """(overrides, Hydra options): a recipe file given first becomes `recipe=STEM`."""
    words = list(words)
    if words and is_recipe_file(words[0]):
        words[0] = recipe_file_override(words[0])
    overrides, options, expects_value = [], [], False
    for word in words:
        if expects_value or word.startswith("-") and not word.startswith("~"):
            options.append(word)
            expects_value = not expects_value and word in HYDRA_FLAGS_WITH_VALUE
        else:
            if is_recipe_file(word):
                raise ConfigError(f"a recipe file goes first: python -m dharma_train {word} key=value ...")
            overrides.append(word)
    return overrides, options


def compose_config(overrides: list[str]) -> DictConfig:
    """The config Hydra would compose from these overrides; a composition error becomes one ConfigError line."""
    from hydra.errors import HydraException

    try:
        return _compose(overrides)
    except HydraException as error:
        raise ConfigError(explain(error, overrides)) from None


def _compose(overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    register_recipes_once()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name=CONFIG_NAME, overrides=overrides)


_registered = False


def register_recipes_once() -> None:
    """Shipped recipes into Hydra's store, once: a recipe file stored later under the same name stays."""
    global _registered
    if not _registered:
        register_recipes()
        _registered = True


def explain(error: Exception, overrides: list[str]) -> str:
    """Hydra's multi-line composition error as one line, with what the user probably meant."""
    from hydra.errors import MissingConfigException, OverrideParseException

    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, MissingConfigException) and error.options is not None:
        group, _, name = (error.missing_cfg_file or "").rpartition("/")
        extra = "; or give a recipe file path first" if group == RECIPE_GROUP else ""
        return (f"unknown {group} '{name}'{did_you_mean(close_names(name, error.options))}; "
                f"known {group} options: {', '.join(error.options)}{extra}")
    if isinstance(error, OverrideParseException):
        words = [word for word in overrides if "=" not in word and not word.startswith("~")] or overrides
        return (f"cannot read '{words[0]}': overrides are key=value (a recipe file path goes first; recipe=NAME "
                "selects a shipped recipe)")
    if first.startswith("Could not override '"):
        key = first.split("'")[1]
        return unknown_key(key, known_keys(overrides, key))
    return first


def unknown_key(key: str, known: list[str]) -> str:
    """'unknown config key ...' naming the recipe's stages when the unknown part is a stage name."""
    parts = key.split(".")
    if parts[0] == "stages" and len(parts) > 1 and f"stages.{parts[1]}" not in known:
        stages = [k.split(".")[1] for k in known if k.count(".") == 1 and k.startswith("stages.")]
        respelled = [".".join(["stages", name, *parts[2:]]) for name in close_names(parts[1], stages)]
        return (f"unknown config key '{key}': '{parts[1]}' is not a stage of this recipe "
                f"(its stages: {', '.join(stages)}){did_you_mean(respelled)}")
    return f"unknown config key '{key}'{did_you_mean(close_paths(key, known))}"


def known_keys(overrides: list[str], failing: str) -> list[str]:
    """Every key of the config composed without the failing override (and without other unknown ones)."""
    from hydra.errors import HydraException

    kept = [word for word in overrides if not word.lstrip("~+").startswith(failing)]
    try:
        values = OmegaConf.to_container(_compose(kept), resolve=False)
    except HydraException:
        values = OmegaConf.to_container(_compose([w for w in kept if w.startswith(RECIPE_GROUP + "=")]),
                                        resolve=False)
    values.pop("hydra", None)
    return flat_keys(values)
