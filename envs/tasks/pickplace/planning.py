"""Symbolic planning over the support graph (which cube rests on which), for the pick-and-place oracles."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from envs.vocab import SkillCall

if TYPE_CHECKING:
    from envs.pickplace import PickPlaceEnv


class Blocks:
    """Symbolic support state for the oracles: parent[i] = -1 table, j cube j, None loose/tilted; `held`."""

    def __init__(self, env: PickPlaceEnv) -> None:
        self.held = env.held_object()
        self.parent: list[int | None] = env.support_graph()
        self.plan: list[SkillCall] = []

    @property
    def n(self) -> int:
        return len(self.parent)

    def above(self, i: int) -> list[int]:
        """Cubes on cube i, bottom-up."""
        out, cur = [], i
        while nxt := [j for j in range(self.n) if self.parent[j] == cur]:
            cur = nxt[0]
            out.append(cur)
        return out

    def below(self, i: int) -> list[int]:
        """Cubes under cube i, from the one it rests on down to the table."""
        out, cur = [], self.parent[i]
        while cur is not None and cur >= 0:
            out.append(cur)
            cur = self.parent[cur]
        return out

    def move(self, i: int, target: int | None = None, zone: str | None = None) -> None:
        """Plan pick (unless already held) and place of cube i on `target`, in `zone`, or on the table."""
        if self.held != i:
            self.plan.append(SkillCall("pick", obj=i))
        if target is not None:
            self.plan.append(SkillCall("place", obj=i, target=target))
        elif zone is not None:
            self.plan.append(SkillCall("place", obj=i, zone=zone))
        else:
            self.plan.append(SkillCall("place", obj=i, location="table"))
        self.held = None
        self.parent[i] = target if target is not None else -1

    def clear(self, i: int, dest: Callable[[int], dict[str, Any]] = lambda b: {}) -> None:
        """Plan moving every cube above i away, top first; `dest(b)` gives move kwargs (default: table)."""
        for b in reversed(self.above(i)):
            self.move(b, **dest(b))
