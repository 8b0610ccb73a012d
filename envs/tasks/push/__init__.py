"""Tasks of the pushing world: Language-Table's single-step families and PaLM-E's long-horizon tasks.

Single-step (templates, synonyms and thresholds as in Language-Table): `block2block`,
`block2absolutelocation`, `block2relativelocation`, `block2block_relative_location`, `separate`.
Long-horizon (PaLM-E Table 2): `corner_to_same_color` (T1), `sort_corners` (T2),
`side_together` (T3), plus `all_to_center` and `color_to_location`.

Modules: `geometry` (board locations, directions, success thresholds), `language` (synonyms and
the world's grammar), `base` (`PushTask`: scene sampling, phrasing, binding) and one module per
task family. Importing this package imports every module in it, which registers the tasks: a new
task is one `PushTask` subclass with `@register_task`, in a new module here or anywhere else.
"""

import importlib
import pkgutil

from envs.tasks.push.base import PushTask
from envs.tasks.push.geometry import (
    LOCATION_POINTS,
    MAGNITUDES,
    RELATION_VECTORS,
    RELATIVE_DIST,
    in_location,
    location_radius,
    offset_point,
    relation_ok,
)
from envs.tasks.push.language import PUSH_GRAMMAR

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

SINGLE_STEP_TASKS: tuple[str, ...] = (
    "block2block",
    "block2absolutelocation",
    "block2relativelocation",
    "block2block_relative_location",
    "separate",
)
LONG_HORIZON_TASKS: tuple[str, ...] = (
    "corner_to_same_color",
    "sort_corners",
    "side_together",
    "all_to_center",
    "color_to_location",
)

__all__ = [
    "LOCATION_POINTS",
    "LONG_HORIZON_TASKS",
    "MAGNITUDES",
    "PUSH_GRAMMAR",
    "RELATION_VECTORS",
    "RELATIVE_DIST",
    "SINGLE_STEP_TASKS",
    "PushTask",
    "in_location",
    "location_radius",
    "offset_point",
    "relation_ok",
]
