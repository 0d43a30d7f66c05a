"""Where the YAML lives: `conf/` (config groups) and `recipes/` (the `recipe` group), in a checkout or a wheel."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from omegaconf import OmegaConf

CONFIG_NAME = "config"
RECIPE_GROUP = "recipe"


def config_dir() -> Path:
    """conf/ as installed (package dharma_train.conf), from a wheel or an editable checkout."""
    return _shipped_folder("dharma_train.conf", "conf")


def recipes_dir() -> Path:
    return _shipped_folder("dharma_train.recipes", "recipes")


def _shipped_folder(package: str, checkout_name: str) -> Path:
    """The installed package folder, or the checkout's own folder when the package is imported uninstalled."""
    try:
        return Path(str(resources.files(package)))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / checkout_name


def recipe_names() -> list[str]:
    return sorted(path.stem for path in recipes_dir().glob("*.yaml"))


def register_recipes() -> None:
    """Offer every recipes/*.yaml as an option of Hydra's `recipe` group (recipes are global overrides)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for path in sorted(recipes_dir().glob("*.yaml")):
        store.store(group=RECIPE_GROUP, name=path.stem, node=OmegaConf.load(path), package="_global_",
                    provider="dharma_train")
