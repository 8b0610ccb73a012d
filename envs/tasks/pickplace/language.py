"""Words of the pick-and-place tasks: the world's instruction grammar.

Slot types (see `envs.language`): `obj` a cube by any phrase that picks it out in the scene
(`cube_phrases`: its name "red cube" / "small red cube" first, then "red block", "red one", "big
cube", ... whenever the colour, the size or both single it out), or `obj j`; `blocks` a list of
cubes ("the a, the b and the c", each "the" optional when read); `color` a cube colour; `zone` a
zone colour. A task may add its own slot types (`CUBE_GRAMMAR.extend(...)`, see `stack`).
"""

from __future__ import annotations

from collections.abc import Sequence

from envs.catalogue import COLOR_NAMES, ObjectDesc
from envs.language import Grammar, ObjectList, ObjectRef, Words
from envs.vocab import object_names, referral_name

NOUNS = ("cube", "block")
SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small", "little", "smaller"), "large": ("large", "big", "bigger")}
# Which attributes may single a cube out, tried in this order (colour alone, size and colour, size alone).
ATTRIBUTE_SETS = (("color",), ("size", "color"), ("size",))


def _matches(o: ObjectDesc, ref: ObjectDesc, attrs: Sequence[str]) -> bool:
    return all(getattr(o, a) == getattr(ref, a) for a in attrs)


def _describe(o: ObjectDesc, attrs: Sequence[str]) -> list[str]:
    sizes = SIZE_WORDS.get(o.size or "", ()) if "size" in attrs else ("",)
    color = o.color if "color" in attrs else ""
    return [" ".join(w for w in (s, color, noun) if w) for s in sizes for noun in (*NOUNS, "one")]


def cube_phrases(i: int, objects: Sequence[ObjectDesc]) -> list[str]:
    """How cube i may be said: its scene name (`object_names`, canonical) first, then every phrase of colour
    and/or size words with a noun ("block", "one") that fits cube i and no other cube of the scene."""
    out = [object_names(objects)[i]]
    for attrs in ATTRIBUTE_SETS:
        if "size" in attrs and objects[i].size is None:
            continue
        if [j for j, o in enumerate(objects) if _matches(o, objects[i], attrs)] == [i]:
            out += [p for p in _describe(objects[i], attrs) if p not in out]
    return out


def cube_readings(objects: Sequence[ObjectDesc]) -> dict[str, int]:
    """Phrase -> cube index: every phrase of `cube_phrases` (each names one cube) and `obj j`."""
    table = {referral_name(i): i for i in range(len(objects))}
    for i in range(len(objects)):
        table.update(dict.fromkeys(cube_phrases(i, objects), i))
    return table


CUBE = ObjectRef(names=cube_phrases, readings=cube_readings)
THE_CUBE = CUBE.with_article("the ")
COLOR = Words({c: (c,) for c in COLOR_NAMES})
CUBE_GRAMMAR = Grammar({"obj": CUBE, "blocks": ObjectList(THE_CUBE), "color": COLOR, "zone": COLOR})
