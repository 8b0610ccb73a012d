"""Words of the pushing tasks: Language-Table's synonyms and the push world's instruction grammar.

Slot types (see `envs.language`): `obj` / `target` a block (by Language-Table's names for it,
its canonical name or `obj j`), `loc` a board location, `corner`, `dir` one of 8 directions,
`slightly` a small-distance word, `rel` a side of another block, `side` / `other` a board half,
`color` a block colour.
"""

from __future__ import annotations

from collections.abc import Sequence

from envs.catalogue import ObjectDesc
from envs.language import Grammar, ObjectRef, Words
from envs.push_blocks import BLOCK_COLORS, block_synonyms
from envs.tasks.push.geometry import CORNERS
from envs.vocab import DIRECTIONS, object_names, referral_name

PUSH_VERBS = ("push", "move", "slide", "put")
PREPOSITIONS = ("to", "towards", "close to", "next to")
LOCATION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "top": ("top side", "top", "top of the board"),
    "top left": ("top left of the board", "top left", "upper left corner", "top left corner"),
    "top right": ("top right of the board", "top right", "upper right corner", "top right corner"),
    "center": ("middle of the board", "center of the board", "center", "middle"),
    "left": ("left side of the board", "center left", "left side"),
    "right": ("right side of the board", "center right", "right side"),
    "bottom": ("bottom side", "bottom", "bottom of the board"),
    "bottom left": ("bottom left of the board", "bottom left", "lower left corner", "bottom left corner"),
    "bottom right": (
        "bottom right of the board",
        "bottom right",
        "lower right corner",
        "bottom right corner",
    ),
}
_AXIS_WORDS = {
    "top": ("up", "upwards"),
    "bottom": ("down", "downwards"),
    "left": ("to the left", "left"),
    "right": ("to the right", "right"),
}
_DIAGONAL_FORMS = ("{} and {}", "{} and then {}", "diagonally {} and {}", "{} and {} diagonally")
DIRECTION_SYNONYMS: dict[str, tuple[str, ...]] = {
    d: (
        _AXIS_WORDS[d]
        if " " not in d
        else tuple(
            form.format(a, b)
            for form in _DIAGONAL_FORMS
            for a in _AXIS_WORDS[d.split()[0]]
            for b in _AXIS_WORDS[d.split()[1]]
        )
    )
    for d in DIRECTIONS
}
SLIGHTLY_SYNONYMS = ("slightly", "a bit", "a little", "a little bit", "somewhat")
RELATION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "top of": ("above", "to the top side of", "to the top of"),
    "bottom of": ("below", "to the bottom side of", "to the bottom of"),
    "left of": ("just left of", "to the left of", "left of", "to the left side of"),
    "right of": ("just right of", "to the right of", "right of", "to the right side of"),
}
SIDE_SYNONYMS: dict[str, tuple[str, ...]] = {"left": ("left",), "right": ("right",)}
CORNER_SYNONYMS: dict[str, tuple[str, ...]] = {
    c: tuple(s for s in LOCATION_SYNONYMS[c] if "corner" in s or s == c) for c in CORNERS
}


def block_phrases(objects: Sequence[ObjectDesc]) -> dict[str, int]:
    """Every unambiguous phrase for a block (Language-Table synonyms, canonical names, 'obj j') -> index."""
    table: dict[str, set[int]] = {}
    canonical = object_names(objects)
    for i in range(len(objects)):
        for phrase in (*block_synonyms(i, objects), canonical[i], referral_name(i)):
            table.setdefault(phrase, set()).add(i)
    return {k: next(iter(v)) for k, v in table.items() if len(v) == 1}


BLOCK = ObjectRef(names=block_synonyms, readings=block_phrases)
PUSH_GRAMMAR = Grammar(
    {
        "obj": BLOCK,
        "target": BLOCK,
        "loc": Words(LOCATION_SYNONYMS),
        "dir": Words(DIRECTION_SYNONYMS),
        "rel": Words(RELATION_SYNONYMS),
        "corner": Words(CORNER_SYNONYMS),
        "side": Words(SIDE_SYNONYMS),
        "other": Words(SIDE_SYNONYMS),
        "color": Words({c: (c,) for c in BLOCK_COLORS}),
        "slightly": Words({"slightly": SLIGHTLY_SYNONYMS}),
    }
)
