"""Where the recipes (``recipes/*.py`` and ``recipes/configs/*.yaml``) are, and how the package runs them.

The recipes are readable scripts, not library modules: they live at the root of a source checkout, and a wheel
installs them under ``<prefix>/share/pc_transformers/recipes`` (setup.py). ``pc-transformers train`` and the demo
load ``recipes/train.py`` from there, so there is one training loop.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_ROOTS = (Path(__file__).resolve().parents[1] / "recipes", Path(sys.prefix) / "share" / "pc_transformers" / "recipes")


def recipes_dir() -> Path:
    """The recipes folder of the source checkout, else the one installed with the wheel."""
    for root in _ROOTS:
        if (root / "train.py").is_file():
            return root
    raise FileNotFoundError(f"the pc_transformers recipes were not found (looked in {[str(r) for r in _ROOTS]})")


def load_recipe(name: str):
    """Import ``recipes/{name}.py`` as a module (e.g. ``load_recipe("train").main(config)``)."""
    path = recipes_dir() / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no recipe {name!r} ({str(path)!r} does not exist)")
    module_name = f"pc_transformers_recipe_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses resolve their annotations through sys.modules
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def config_path(name: str) -> Path:
    """A ready-made config by file name or stem (``pc_maze16``), or a path to one's own file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    bundled = recipes_dir() / "configs" / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if bundled.is_file():
        return bundled
    available = sorted(p.stem for p in (recipes_dir() / "configs").glob("*.yaml"))
    raise FileNotFoundError(f"config {name!r} is neither a YAML file nor one of the ready-made configs {available}")
