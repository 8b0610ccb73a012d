"""A step a planner writes in the scene its rows show, read there and carried onto the simulator's objects (issue #20).

With `state=estimated` (or `noisy`) a model planner reads object rows that are not the simulator's: perception's
estimate, in its own row order (x then y), missing what the camera does not see, sometimes with an object the
table does not hold. The steps it may choose among already come from that scene (`agent.parser.planning_scene`),
so its names are that scene's canonical names ("the orange cube" when the arm hides the other orange cube) and its
`obj j` is the j-th row it read. `read_step` therefore parses the step against that scene (`seen`), and only then
maps the call's objects (the `envs.vocab.OBJECT_FIELDS`: obj, target) onto the simulator's objects, which the
executor, the trace and the task's success check work with:

- `match_rows`: each seen row is the simulator object of its colour and shape (and size, when both give one)
  nearest it, one to one (greedy by distance; the held object is paired first: which object is in the hand is
  known by touch and by the planner's own pick, `SceneContext.from_obs`). Then a row left over takes the nearest
  object of its colour and shape left over whatever their sizes: perception misjudges sizes (a large cube stacked
  on a small one is estimated small), and a size word that disambiguates nothing must not make a phantom of the
  cube. No distance gate: a seen row is a phantom only when every simulator object of its colour and shape is
  taken (or there is none).
- `ground`: the parsed call with its object indices mapped; a step naming a phantom is a `PlanError`
  (`unknown_object`, an invalid reference of the step, fed back to the planner), never an exception.

With `state=privileged` the seen scene is the simulator's scene itself and `read_step` is `PlanParser(scene)` as
it always was. A privileged planner (`Planner.privileged`: the oracle, the human, who read and name the simulator's
scene) is read against the simulator's scene whatever the source (the loop passes no `seen`).

What the trace keeps (`agent.loop.StepRecord`): `call` is the simulator's call (what ran, what datasets and
metrics read); `seen_call` the call as read, in the indices of the planner's rows; the history text (`step`, what
the planner's next prompt holds) is the step in the planner's own names (the seen scene's), so its prompts never
learn from its history names the simulator holds and it does not see. Skills that act on the camera's estimate
(`skills_use=estimated`) are handed the rows the step named (`ReadStep.named`, set on the env while the step
runs: `envs.state_sources.NamedRows`), so they act on the very row the planner named.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from agent.parser import PlanError, PlanParser, SceneContext
from envs.catalogue import ObjectDesc, same_kind
from envs.state_sources import NamedRows
from envs.vocab import OBJECT_FIELDS, SkillCall, render_step

__all__ = ["ReadStep", "ground", "match_rows", "read_step"]


def _present(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    return rows[rows[:, -1] > 0.5]


def match_rows(seen: SceneContext, rows: np.ndarray, scene: SceneContext, sim_rows: np.ndarray) -> list[int | None]:
    """The simulator object (index of `scene.objects`) each object of `seen` is, or None for a phantom.

    `rows`: the observation's object rows `seen` was read from (`SceneContext.from_obs`: its objects are the
    present rows, in order); `sim_rows`: the simulator's (`env.object_rows()`, slot i = `scene.objects[i]`).
    One to one: the held objects of both scenes (when both are known and look alike) are paired first, then the
    (seen, simulator) pairs of the same kind (`catalogue.same_kind`: sizes agree where both give one) nearest first,
    then the rows left over with the objects left over of their colour and shape, nearest first (a misjudged
    size). Each object once; ties fall to the lower indices.
    """
    if not seen.objects:  # nothing seen (or a held object no row shows: `from_obs` then keeps no objects)
        return []
    seen_xyz = _present(rows)[:, :3]
    sim_xyz = _present(sim_rows)[:, :3]
    if len(seen_xyz) != len(seen.objects) or len(sim_xyz) != len(scene.objects):
        raise ValueError(f"rows do not fit the scenes: {len(seen_xyz)} present rows for {len(seen.objects)} seen "
                         f"objects, {len(sim_xyz)} for {len(scene.objects)} simulator objects")
    out: list[int | None] = [None] * len(seen.objects)
    taken: set[int] = set()
    if seen.held is not None and scene.held is not None and _looks_alike(seen.objects[seen.held], scene.objects[scene.held]):
        out[seen.held] = scene.held
        taken.add(scene.held)
    for fits in (same_kind, _looks_alike):  # sizes agreeing first; then the sizes perception got wrong
        pairs = sorted((float(np.linalg.norm(seen_xyz[k] - sim_xyz[i])), k, i)
                       for k, d in enumerate(seen.objects) if out[k] is None
                       for i, o in enumerate(scene.objects) if i not in taken and fits(d, o))
        for _, k, i in pairs:
            if out[k] is None and i not in taken:
                out[k] = i
                taken.add(i)
    return out


def _looks_alike(a: ObjectDesc, b: ObjectDesc) -> bool:
    """Colour and shape equal, whatever the sizes."""
    return a.color == b.color and a.shape == b.shape


def ground(call: SkillCall, seen: SceneContext, match: list[int | None]) -> SkillCall | PlanError:
    """`call` (read against `seen`) with each object index mapped by `match` (`match_rows`) onto the simulator's
    objects; a `PlanError` (unknown_object) naming the first object the simulator does not hold."""
    mapped: dict[str, int] = {}
    for field in OBJECT_FIELDS:
        k = getattr(call, field)
        if k is None:
            continue
        if match[k] is None:
            name = seen.names[k]
            shown = name if name.startswith("obj ") else f"{'an' if name[0] in 'aeiou' else 'a'} {name}"
            return PlanError("unknown_object", f"the state estimate shows {shown} that the table does not hold")
        mapped[field] = match[k]
    return replace(call, **mapped)


@dataclass(frozen=True)
class ReadStep:
    """A step of plan text read for execution (`read_step`)."""

    call: SkillCall | None  # on the simulator's objects: what runs, is recorded and judged; None when it failed
    error: PlanError | None  # why the step cannot run (it did not parse, or names a phantom)
    step: str | None  # canonical text in the names of the scene it was read against; None when it did not parse
    seen_call: SkillCall | None = None  # the call as read against the planner's rows (their indices), when it was
    named: NamedRows | None = None  # the rows the step named the call's objects by, when read against them


def read_step(text: object, scene: SceneContext, seen: SceneContext | None = None, rows: np.ndarray | None = None,
              sim_rows: np.ndarray | None = None) -> ReadStep:
    """Read plan text for execution on the simulator's `scene` (see the module docstring).

    `seen` None or `scene` itself: parsed against `scene`, exactly `PlanParser(scene).parse`. Otherwise parsed
    against `seen` (the scene the planner's rows show, read from the observation's object rows `rows`) and
    grounded on the simulator's objects (`sim_rows`: `env.object_rows()`). Never raises for any text.
    """
    if seen is None or seen is scene:
        parsed = PlanParser(scene).parse(text)
        if isinstance(parsed, PlanError):
            return ReadStep(None, parsed, None)
        return ReadStep(parsed, None, render_step(parsed, scene.names))
    if rows is None or sim_rows is None:
        raise ValueError("read_step: a step read against the seen scene needs its rows and the simulator's")
    parsed = PlanParser(seen).parse(text)
    if isinstance(parsed, PlanError):
        return ReadStep(None, parsed, None)
    step = render_step(parsed, seen.names)
    grounded = ground(parsed, seen, match_rows(seen, rows, scene, sim_rows))
    if isinstance(grounded, PlanError):
        shown = text[:120] if isinstance(text, str) else repr(text)[:120]
        return ReadStep(None, replace(grounded, text=shown), step, parsed)
    named = {getattr(grounded, f): getattr(parsed, f) for f in OBJECT_FIELDS if getattr(parsed, f) is not None}
    return ReadStep(grounded, None, step, parsed, NamedRows(np.array(rows, copy=True), named) if named else None)
