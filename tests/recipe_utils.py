"""Helpers of the recipe tests: load a recipe by name and compare recipes field by field."""
from detectron2.config import LazyConfig
from omegaconf import OmegaConf

from mlla_rtdetr.config import config_path


def load_recipe(name: str):
    """The LazyConfig of ``projects/mlla_rtdetr/configs/<name>``."""
    return LazyConfig.load(str(config_path(name)))


def recipe_without(cfg, *paths: str) -> dict:
    """``cfg`` as a plain dict (interpolations unresolved) without the dotted ``paths``: two recipes
    that differ only there compare equal."""
    d = OmegaConf.to_container(cfg, resolve=False)
    for path in paths:
        node = d
        *parents, last = path.split(".")
        for p in parents:
            node = node[p]
        node.pop(last)
    return d
