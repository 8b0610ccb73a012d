"""Words of the pick-and-place tasks: the world's instruction grammar.

Slot types (see `envs.language`): `obj` a cube by its name (`object_names`: "red cube", "small red
cube") or `obj j`; `blocks` a list of cubes ("the a, the b and the c", each "the" optional when
read); `color` a cube colour; `zone` a zone colour. A task may add its own slot types
(`CUBE_GRAMMAR.extend(...)`, see `stack`).
"""

from __future__ import annotations

from collections.abc import Sequence

from envs.catalogue import COLOR_NAMES, ObjectDesc
from envs.language import Grammar, ObjectList, ObjectRef, Words
from envs.vocab import object_names, referral_name


def cube_name(i: int, objects: Sequence[ObjectDesc]) -> list[str]:
    """How cube i is said: its name in the scene."""
    return [object_names(objects)[i]]


def cube_readings(objects: Sequence[ObjectDesc]) -> dict[str, int]:
    """Phrase -> cube index: the scene's names and `obj j`."""
    table = {referral_name(i): i for i in range(len(objects))}
    table.update({name: i for i, name in enumerate(object_names(objects))})
    return table


CUBE = ObjectRef(names=cube_name, readings=cube_readings)
THE_CUBE = CUBE.with_article("the ")
COLOR = Words({c: (c,) for c in COLOR_NAMES})
CUBE_GRAMMAR = Grammar({"obj": CUBE, "blocks": ObjectList(THE_CUBE), "color": COLOR, "zone": COLOR})
