"""Tasks of the pick-and-place world: stack, grasp, put_in_zone, sort_by_color, unstack.

Modules: `scene` (cubes, towers and zones per split, and their placement), `language` (the
world's grammar: cube phrases, lists, colours), `planning` (`Blocks`, the symbolic planner over
the support graph that the oracles are written in), `base` (`PickPlaceTask`) and one module per
task family. Importing this package imports every module in it, which registers the tasks: a new
task is one `PickPlaceTask` subclass with `@register_task`, in a new module here or anywhere else.

Splits: `train`, `L1` (3-5 cubes, training templates, held-out colour/size pairs excluded),
`L2` (at least one cube of a held-out colour/size pair, named in the goal where the task names
cubes), `L3` (6-8 cubes, longer towers), `L4` (held-out phrasings).
"""

import importlib
import pkgutil

from envs.tasks.pickplace.base import PickPlaceTask
from envs.tasks.pickplace.language import CUBE_GRAMMAR
from envs.tasks.pickplace.scene import HELDOUT_COMBOS

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["CUBE_GRAMMAR", "HELDOUT_COMBOS", "PickPlaceTask"]
