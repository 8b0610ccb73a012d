"""State sources (issue #20): where the object and zone rows of an env's observation come from.

An env's `observe()` takes its `objects` and `zones` rows from the `StateSource` set on it
(`TabletopEnv(state=..., state_noise_m=...)`, or `env.state_source = make_state_source(...)`); the
observation keeps its keys, shapes and dtypes whatever the source, so every consumer (prompts, the
recorder, gymnasium's checker) works unchanged. The simulator's rows stay where they were:
`env.object_rows()` / `env.zone_rows()` (and the worlds' helpers) are what tasks judge success on and
what the oracle plans from, whatever the source.

Sources (one class each, registered by name):
- `privileged`: the simulator's rows (`env.object_rows()`, `env.zone_rows()`), the default.
- `estimated`: `envs.perception` on a frame rendered for it (`render_for_perception`, the world's default
  perception size), from the camera alone; rows sorted by x then y (not in the scene's slot order), objects
  it cannot see are missing. `perceive(env)` gives the whole `Estimate` (confidence, support), cached per
  scene and control step, so the planner's rows and the skills' positions at one decision point are one
  estimate. An env built with `blank_perception=True` (palme-eval/run/collect's `blank_frames=true`) gives
  perception a blank camera: no object and no zone rows.
- `noisy`: the simulator's object and zone rows through `perception.noisy_rows` with Gaussian noise of
  `noise_m` (m) on x, y, z, drawn from the env's `state_rng` (seeded from the episode seed at reset: the same
  seed gives the same noise, no global randomness).

Add a source: subclass `StateSource`, set `name`, implement `rows(env)`, decorate with
`@register_state_source`; `state=<name>` then works in the env and the CLIs.

`NamedRows` / `naming_rows`: while a plan step the planner wrote in the scene its rows show runs (`agent.grounding`),
the env holds which of those rows each of the call's (simulator) objects was named by, for skills that act on the
camera's estimate (`policies.estimated`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from envs.perception import Estimate

DEFAULT_NOISE_M = 0.01  # noisy: standard deviation of the position noise (m)
STATE_RNG_KEY = 2020  # mixed into the episode seed for the env's state_rng (issue #20), apart from the scene's stream


class StateSource(ABC):
    """Gives an env's observation its object and zone rows."""

    name: ClassVar[str]

    @abstractmethod
    def rows(self, env: Any) -> tuple[np.ndarray, np.ndarray]:
        """(objects (MAX_OBJECTS, OBJ_DIM) float32, zones (MAX_ZONES, OBJ_DIM) float32) for the env's current
        state, in the layout of `env.object_rows()` / `env.zone_rows()` (absent rows zero)."""

    def describe(self) -> dict[str, Any]:
        """Plain data naming the source and its settings (for logs and dataset metadata)."""
        return {"source": self.name}


STATE_SOURCES: dict[str, type[StateSource]] = {}


def register_state_source(cls: type[StateSource]) -> type[StateSource]:
    """Class decorator: make a state source available as `state=<cls.name>`; a taken name is refused."""
    if cls.name in STATE_SOURCES:
        raise ValueError(f"state source {cls.name!r} is already registered")
    STATE_SOURCES[cls.name] = cls
    return cls


def state_source_names() -> list[str]:
    """Registered state source names, in registration order (privileged first)."""
    return list(STATE_SOURCES)


def check_state_source(name: object) -> str:
    """`name` if it is a registered state source; ValueError (one line listing the known ones) otherwise."""
    if name not in STATE_SOURCES:
        raise ValueError(f"state must be one of {state_source_names()}, got {name!r}")
    return str(name)


def check_noise(noise_m: object) -> float:
    """`noise_m` as a float if it is a finite standard deviation >= 0 (m); ValueError (one line) otherwise."""
    try:
        value = float(noise_m)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(noise_m, bool) or not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"state_noise_m must be a finite standard deviation >= 0 (m), got {noise_m!r}")
    return value


def make_state_source(name: str = "privileged", noise_m: float = DEFAULT_NOISE_M) -> StateSource:
    """The state source `name` (see the module docstring); `noise_m` (m) is the `noisy` source's standard deviation.

    Raises ValueError (one line) for an unknown name (listing the known ones) or a bad `noise_m`.
    """
    cls = STATE_SOURCES[check_state_source(name)]
    noise_m = check_noise(noise_m)
    return cls(noise_m=noise_m) if cls is NoisyState else cls()


@register_state_source
class PrivilegedState(StateSource):
    """The simulator's rows."""

    name = "privileged"

    def rows(self, env: Any) -> tuple[np.ndarray, np.ndarray]:
        return env.object_rows(), env.zone_rows()


@register_state_source
class EstimatedState(StateSource):
    """Rows estimated by `envs.perception` from the env's camera (see `perceive`)."""

    name = "estimated"

    def rows(self, env: Any) -> tuple[np.ndarray, np.ndarray]:
        est = perceive(env)
        return est.objects.copy(), est.zones.copy()


@register_state_source
class NoisyState(StateSource):
    """The simulator's rows with Gaussian position noise of `noise_m` (m), drawn from `env.state_rng`."""

    name = "noisy"

    def __init__(self, noise_m: float = DEFAULT_NOISE_M) -> None:
        self.noise_m = check_noise(noise_m)

    def rows(self, env: Any) -> tuple[np.ndarray, np.ndarray]:
        from envs.perception import noisy_rows

        rng = env.state_rng
        return noisy_rows(env.object_rows(), rng, self.noise_m), noisy_rows(env.zone_rows(), rng, self.noise_m)

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "noise_m": self.noise_m}


def state_rng(seed: int | None, fallback: np.random.Generator) -> np.random.Generator:
    """The generator of an episode's state noise: from `seed` (with STATE_RNG_KEY, so it never repeats the scene's
    stream), or, for an unseeded reset, from one draw of `fallback` (the env's own np_random)."""
    if seed is None:
        return np.random.default_rng(int(fallback.integers(2**63)))
    return np.random.default_rng([int(seed), STATE_RNG_KEY])


def perceive(env: Any, fresh: bool = False) -> Estimate:
    """`envs.perception`'s estimate of the env's scene now: a frame rendered for it (`render_for_perception`, the
    world's default size) read by the env's `Perception` (built on first use).

    Cached per scene (`env.scene_id`), control step (`env.t`) and `env.blank_perception` (a blank camera, see
    `render_for_perception`): the planner's rows and the skills' positions at one decision point come from one
    estimate; `fresh=True` renders again (after a change that moved nothing in control time, e.g. a test that
    teleports a body).
    """
    from envs.perception import Perception, render_for_perception

    u = getattr(env, "unwrapped", env)
    key = (u.scene_id, u.t, u.blank_perception)
    cached = u._estimate_cache
    if not fresh and cached is not None and cached[0] == key:
        return cached[1]
    if u._perception is None:
        u._perception = Perception(u.world)
    rgb, depth = render_for_perception(u, u._perception.image_size)
    est = u._perception.estimate(rgb, depth, u._view, u._proj)
    u._estimate_cache = (key, est)
    return est


@dataclass(frozen=True)
class NamedRows:
    """The observation's object rows a running plan step named its objects by (`env.named_rows`, see `naming_rows`).

    `rows`: the observation's object rows (OBJ_FIELDS layout) the planner read; `of`: simulator object index (of
    the running call) -> index among the present `rows` that the step named it by. Made by `agent.grounding` for a
    step read against the scene the planner's rows show (state estimated, noisy) and mapped onto the simulator's
    objects; `policies.estimated` acts on those very rows when they are the estimate it acts on (`rows_for`).
    """

    rows: np.ndarray
    of: Mapping[int, int]

    def rows_for(self, objects: np.ndarray) -> Mapping[int, int]:
        """`of` when `objects` (an estimate's object rows) are the rows the step was named from, else nothing."""
        same = self.rows.shape == objects.shape and np.array_equal(self.rows, objects)
        return self.of if same else {}


@contextmanager
def naming_rows(env: Any, named: NamedRows | None) -> Iterator[None]:
    """Set `env.named_rows` to `named` for the duration (the env untouched when `named` is None), then restore it."""
    if named is None:
        yield
        return
    u = getattr(env, "unwrapped", env)
    before = getattr(u, "named_rows", None)
    u.named_rows = named
    try:
        yield
    finally:
        u.named_rows = before
