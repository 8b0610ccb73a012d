"""Questions and answers about a scene, computed from logged object-state rows (no simulator needed).

Frames of reference, as the questions mean them:
- "left"/"right" are as seen in the camera image: object A is left of B when A's centre projects
  to a smaller image column than B's (the camera's view and projection matrices are stored in
  the dataset's info.json). "Left/right/center of the table" splits the workspace's projected
  width into thirds.
- "front"/"back" of the table: the half nearer to / farther from the camera, i.e. the lower /
  upper half of the image around the workspace centre's projection.
- "on top of", "on the table", "in the <colour> zone", "in the gripper": the relations of
  `envs.geometry` (`support_graph`, `in_zone`, `held_row`), the ones the world judges task success
  with, read from the logged rows; zones are catalogue.zone_row rows. "Which zone" is not asked
  when the centre is within `ZONE_MARGIN` of a zone's edge.
- "nearer to": 3-D distance between centres; asked only when the two distances differ by > 2 cm.
Questions whose answer would sit within a small margin of a boundary are not asked, so every
answer is unambiguous.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.catalogue import COLOR_NAMES, ObjectDesc, descs_from_rows
from envs.geometry import Camera, held_row, in_zone, support_graph, zone_margin
from envs.vocab import object_names, referral_name

# Question margins: a question is not asked when its answer sits this close to a boundary.
UV_MARGIN = 0.02  # image-width fraction: "left of" needs this much separation
NEAR_MARGIN = 0.02  # m: "nearer to" needs this much difference
ZONE_MARGIN = 0.01  # m: "which zone" is not asked about a centre this close to a zone's edge


@dataclass
class SceneObject:
    slot: int
    name: str  # as the plan language names it
    color: str
    shape: str
    size: float  # edge length (m)
    pos: np.ndarray  # (3,) world position of the centre
    referral: int | None = None  # the row `obj j` names it by (j - 1): its slot, else None (not referable)


class Scene:
    """The objects of one frame and their relations, from the (MAX_OBJECTS, OBJ_DIM) rows."""

    def __init__(
        self, rows: np.ndarray, names: Sequence[str] | None = None, camera: Camera | None = None,
        table_z: float = 0.0, workspace: Sequence[Sequence[float]] | None = None, ee: Sequence[float] | None = None,
        zones: np.ndarray | None = None, referrals: Mapping[int, int] | None = None,
    ) -> None:
        """`referrals`: slot -> the row index its entity referral names, when the model reads other rows than these
        (`same_cubes`: data.state=observed); a slot it lacks is not referred to. None: every object is its own slot."""
        rows = np.asarray(rows, np.float64)
        present = [i for i in range(len(rows)) if rows[i, -1] > 0.5]
        descs = [(d.color, d.shape) for d in descs_from_rows(rows)]  # one per present slot, in slot order
        if names is None:  # slot -> name, as the plan language would name them without sizes
            by_slot = dict(zip(present, object_names([ObjectDesc(c, s) for c, s in descs])))
        elif len(names) <= max(present, default=-1):
            raise ValueError(f"names must cover every present slot {present}, got {len(names)} names")
        else:
            by_slot = {i: names[i] for i in present}
        self.objects = [
            SceneObject(i, by_slot[i], c, s, float(rows[i, 7]), rows[i, :3].copy(),
                        i if referrals is None else referrals.get(i))
            for i, (c, s) in zip(present, descs)
        ]
        self.camera, self.table_z = camera, table_z
        self.workspace = np.asarray(workspace, np.float64) if workspace is not None else None  # [[x0, y0], [x1, y1]]
        self._rows = rows[present]  # (n, OBJ_DIM): the present objects, in `objects` order
        graph = support_graph(self._rows, table_z)  # nobody is known to be held: rows carry no finger contacts
        self._support: list[int | str | None] = ["table" if s == -1 else s for s in graph]
        self.held = None if ee is None else held_row(self._rows, ee, graph)
        zrows = np.zeros((0, rows.shape[1])) if zones is None else np.asarray(zones, np.float64)
        self._zone_rows = zrows[zrows[:, -1] > 0.5]  # (nz, OBJ_DIM): the present zones
        # (colour, centre (2,), side) of each present zone row
        self.zones = [(COLOR_NAMES[int(z[8])], z[:2].copy(), float(z[7])) for z in self._zone_rows]

    # ---- relations ----------------------------------------------------------------------------
    def zone_of(self, k: int) -> str | None:
        """Colour of the zone object k lies in ("" when in none); None when its centre is near a zone's edge."""
        row = self._rows[k : k + 1]
        inside = in_zone(row, self._zone_rows, self._support[k : k + 1])[0]
        for (color, _, _), gap, ok in zip(self.zones, zone_margin(row, self._zone_rows)[0], inside):
            if abs(gap) < ZONE_MARGIN:
                return None
            if gap > 0:
                return color if ok else ""
        return ""

    def support(self, k: int) -> int | str | None:
        """Index (into `objects`) of what object k rests on, "table", or None (held / in the air / tilted)."""
        return self._support[k]

    def on_top_of(self, a: int, b: int) -> bool:
        """Whether object a rests directly on object b."""
        return self._support[a] == b

    def above(self, k: int) -> int | None:
        """The object resting directly on object k, if any."""
        for j, s in enumerate(self._support):
            if s == k:
                return j
        return None

    def uv(self, k: int) -> tuple[float, float]:
        if self.camera is None:
            raise ValueError("image-frame relations need the camera matrices (info.json palme.camera)")
        return self.camera.uv(self.objects[k].pos)

    def table_side(self, k: int) -> tuple[str | None, str | None]:
        """("left" | "center" | "right", "front" | "back") in the camera image; None near a boundary."""
        u, v = self.uv(k)
        if self.workspace is not None:
            (x0, y0), (x1, y1) = self.workspace
            corners = [self.camera.uv((x, y, self.table_z)) for x in (x0, x1) for y in (y0, y1)]
            us = [c[0] for c in corners]
            u_lo, u_hi = min(us), max(us)
            u_c, v_c = self.camera.uv(((x0 + x1) / 2, (y0 + y1) / 2, self.table_z))
        else:
            u_lo, u_hi, u_c, v_c = 0.0, 1.0, 0.5, 0.5
        third = (u_hi - u_lo) / 6
        margin = UV_MARGIN / 2
        if u < u_c - third - margin:
            lr = "left"
        elif u > u_c + third + margin:
            lr = "right"
        elif abs(u - u_c) < third - margin:
            lr = "center"
        else:
            lr = None
        fb = None if abs(v - v_c) < margin else ("front" if v > v_c else "back")
        return lr, fb

    def left_of(self, a: int, b: int) -> bool | None:
        """Whether a appears left of b in the image; None when too close to tell."""
        du = self.uv(a)[0] - self.uv(b)[0]
        return None if abs(du) < UV_MARGIN else du < 0

    def caption(self) -> str:
        """Short scene caption: where every object rests."""
        parts = []
        for k, o in enumerate(self.objects):
            s = self._support[k]
            if s == "table":
                where = "on the table"
            elif s is None:
                where = "in the gripper" if k == self.held else "in the air"
            else:
                where = f"on the {self.objects[s].name}"
            parts.append(f"the {o.name} is {where}")
        return "; ".join(parts) + "." if parts else "the table is empty."


# ---- question generators: (scene, rng) -> (question, answer) or None; registered as example sources
# in training/sources.py, each drawing from its own random stream ----------------------------------
QA = tuple[str, str]


def q_color(scene: Scene, rng: np.random.Generator) -> QA | None:
    """q1: colour by entity referral (of the objects that have one: `SceneObject.referral`)."""
    referable = [o for o in scene.objects if o.referral is not None]
    if not referable:
        return None
    o = referable[int(rng.integers(len(referable)))]
    return f"What colour is {referral_name(o.referral)}?", o.color


def q_table(scene: Scene, rng: np.random.Generator) -> QA | None:
    """q2: object-table relation (left/right/center or front/back, as seen by the camera)."""
    for k in rng.permutation(len(scene.objects)):
        lr, fb = scene.table_side(int(k))
        name = scene.objects[int(k)].name
        if lr is not None and (fb is None or rng.random() < 0.5):
            return f"Is the {name} left, right, or center of the table?", lr
        if fb is not None:
            return f"Is the {name} in the front or the back of the table?", fb
    return None


def q_relation(scene: Scene, rng: np.random.Generator) -> QA | None:
    """q3: object-object relation: on top of, left of, nearer to."""
    n = len(scene.objects)
    if n < 2:
        return None
    kinds = ["on"] + (["left"] if scene.camera is not None else []) + (["near"] if n >= 3 else [])
    kind = rng.choice(kinds)
    a, b = (int(x) for x in rng.choice(n, 2, replace=False))
    na, nb = scene.objects[a].name, scene.objects[b].name
    if kind == "on":
        stacked = [(i, s) for i, s in enumerate(scene._support) if isinstance(s, int)]
        if stacked and rng.random() < 0.5:  # half the time ask about a real stack, else answers would be mostly "no"
            a, b = stacked[int(rng.integers(len(stacked)))]
            na, nb = scene.objects[a].name, scene.objects[b].name
        return f"Is the {na} on top of the {nb}?", "yes" if scene.on_top_of(a, b) else "no"
    if kind == "left":
        left = scene.left_of(a, b)
        return None if left is None else (f"Is the {na} left of the {nb}?", "yes" if left else "no")
    c = int(rng.choice([i for i in range(n) if i not in (a, b)]))
    da = np.linalg.norm(scene.objects[a].pos - scene.objects[c].pos)
    db = np.linalg.norm(scene.objects[b].pos - scene.objects[c].pos)
    if abs(da - db) < NEAR_MARGIN:
        return None
    nc = scene.objects[c].name
    return f"Which is nearer to the {nc}, the {na} or the {nb}?", f"the {na if da < db else nb}"


def q_feasibility(scene: Scene, rng: np.random.Generator) -> QA | None:
    """q4: can X be picked up now? -> yes / no, the Y is on top of it / no, the gripper is holding the Y."""
    if not scene.objects:
        return None
    blocked = [k for k in range(len(scene.objects)) if scene.above(k) is not None]
    pool = blocked if blocked and rng.random() < 0.5 else list(range(len(scene.objects)))
    k = int(pool[int(rng.integers(len(pool)))])
    top = scene.above(k)
    if scene.held == k:
        answer = "no, it is already in the gripper"
    elif scene.held is not None:
        answer = f"no, the gripper is holding the {scene.objects[scene.held].name}"
    else:
        answer = "yes" if top is None else f"no, the {scene.objects[top].name} is on top of it"
    return f"Can the {scene.objects[k].name} be picked up now?", answer


def q_count(scene: Scene, rng: np.random.Generator) -> QA | None:
    """Counting: all objects, or those of one colour."""
    if rng.random() < 0.5 or not scene.objects:
        return "How many objects are on the table?", str(len(scene.objects))
    color = scene.objects[int(rng.integers(len(scene.objects)))].color
    return f"How many {color} objects are there?", str(sum(o.color == color for o in scene.objects))


def q_zone(scene: Scene, rng: np.random.Generator) -> QA | None:
    """Which zone is X in? -> "the <colour> zone" / "none" (scenes with target zones only)."""
    if not scene.zones or not scene.objects:
        return None
    where = [scene.zone_of(k) for k in range(len(scene.objects))]
    inside = [k for k, z in enumerate(where) if z]
    pool = inside if inside and rng.random() < 0.5 else [k for k, z in enumerate(where) if z is not None]
    if not pool:
        return None
    k = int(pool[int(rng.integers(len(pool)))])
    return f"Which zone is the {scene.objects[k].name} in?", f"the {where[k]} zone" if where[k] else "none"


def q_support(scene: Scene, rng: np.random.Generator) -> QA | None:
    """What is X on? -> "the table" / "the <Y>" / "nothing, it is in the gripper" (half the time about a stacked cube).

    The answer names the supporting cube as plan steps do (size words included where two cubes share
    a colour), so the model must tell which of two same-coloured cubes holds another up.
    """
    askable = [k for k in range(len(scene.objects)) if scene.support(k) is not None or k == scene.held]
    stacked = [k for k in askable if isinstance(scene.support(k), int)]
    pool = stacked if stacked and rng.random() < 0.5 else askable
    if not pool:
        return None
    k = int(pool[int(rng.integers(len(pool)))])
    s = scene.support(k)
    answer = "nothing, it is in the gripper" if s is None else "the table" if s == "table" else f"the {scene.objects[s].name}"
    return f"What is the {scene.objects[k].name} on?", answer


def q_caption(scene: Scene, rng: np.random.Generator) -> QA | None:
    """Short scene caption."""
    return "Describe the scene.", scene.caption()


def same_cubes(rows: np.ndarray, seen: np.ndarray) -> dict[int, int]:
    """slot of `rows` -> index of the row of `seen` that is the same cube: the nearest centre within half the cube's
    edge (whatever colour, size or shape the row says), pairs taken nearest first, each row of `seen` at most once.

    `rows` are the simulator's, `seen` another source's estimate of the same frame (data.state=observed): its own
    order, its own errors, possibly cubes missing (hidden) or phantom ones; a cube without a row is left out."""
    rows, seen = np.asarray(rows, np.float64), np.asarray(seen, np.float64)
    mine, theirs = np.flatnonzero(rows[:, -1] > 0.5), np.flatnonzero(seen[:, -1] > 0.5)
    gap = np.linalg.norm(rows[mine, None, :3] - seen[None, theirs, :3], axis=-1)  # (n, m) centre distances
    near = sorted((gap[a, b], a, b) for a in range(len(mine)) for b in range(len(theirs))
                  if gap[a, b] <= rows[mine[a], 7] / 2)
    out: dict[int, int] = {}
    for _, a, b in near:
        if int(mine[a]) not in out and int(theirs[b]) not in out.values():
            out[int(mine[a])] = int(theirs[b])
    return out


def goal_question(name: str, instruction: str) -> str:
    """Where does the instruction want this object? (answered from the task's goal: `Task.goal_places`)."""
    return f"Where should the {name} go? Task: {instruction.strip().rstrip('.')}."


def skill_question(step: str) -> str:
    """PaLM-E's failure detection: was <skill> successful?"""
    return f"Was {step.strip().rstrip('.')} successful?"


def camera_from_info(info: dict[str, Any]) -> tuple[Camera | None, float, Any]:
    """(camera, table height, workspace) recorded in a dataset's info.json palme block."""
    palme = info.get("palme") or {}
    cam = palme.get("camera")
    camera = Camera(tuple(cam["view"]), tuple(cam["proj"])) if cam else None
    return camera, float(palme.get("table_z", 0.0)), palme.get("workspace")
