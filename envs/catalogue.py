"""The object catalogue shared by both worlds: colours, shapes, sizes and the object-state row layout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Colour names and RGBA values. Chosen to be easy to tell apart at low resolution.
COLORS: dict[str, tuple[float, float, float, float]] = {
    "red": (0.85, 0.12, 0.10, 1.0),
    "green": (0.15, 0.70, 0.20, 1.0),
    "blue": (0.12, 0.30, 0.90, 1.0),
    "yellow": (0.95, 0.85, 0.10, 1.0),
    "purple": (0.55, 0.20, 0.75, 1.0),
    "orange": (1.00, 0.50, 0.05, 1.0),
    "cyan": (0.10, 0.85, 0.85, 1.0),
    "white": (0.95, 0.95, 0.95, 1.0),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
SHAPE_NAMES: tuple[str, ...] = ("cube", "moon", "star", "pentagon")
SIZE_NAMES: tuple[str, ...] = ("small", "large")
SIZE_EDGES: dict[str, float] = {"small": 0.04, "large": 0.05}  # cube edge lengths (m) of the size names

MAX_OBJECTS = 8  # object-row slots in every observation, both worlds
MAX_ZONES = 4  # zone-row slots in every observation (the pick-and-place world's target zones; none when pushing)
ZONE_KIND = "zone"  # the `shape` word of a zone row: shape_id len(SHAPE_NAMES), after every object shape

# Object-state row layout (one row per slot), the state estimate fed to the model as object tokens.
OBJ_FIELDS: tuple[str, ...] = (
    "x", "y", "z",  # position in the world frame (m)
    "qx", "qy", "qz", "qw",  # orientation quaternion (PyBullet order)
    "size",  # edge length / width (m)
    "color_id",  # index into COLOR_NAMES
    "shape_id",  # index into SHAPE_NAMES
    "present",  # 1.0 if the slot holds an object, else 0.0 (and the row is zeros)
)
OBJ_DIM = len(OBJ_FIELDS)

# Robot-state vector layout, shared by both worlds so one model reads both.
ROBOT_FIELDS: tuple[str, ...] = (
    "ee_x", "ee_y", "ee_z",
    "ee_qx", "ee_qy", "ee_qz", "ee_qw",
    "gripper_opening",  # finger gap (m); 0 for the pusher
    *(f"q{i}" for i in range(9)),  # joint positions (Panda: 7 arm + 2 fingers); pusher: target x, y then zeros
)
ROBOT_DIM = len(ROBOT_FIELDS)


@dataclass(frozen=True)
class ObjectDesc:
    """What can be said about an object in words: the basis of its name in plan steps."""

    color: str
    shape: str = "cube"
    size: str | None = None  # "small" / "large" in the pick-and-place world, None where all share a size

    def __post_init__(self) -> None:
        if self.color not in COLORS:
            raise ValueError(f"unknown colour {self.color!r}; expected one of {list(COLOR_NAMES)}")
        if self.shape not in SHAPE_NAMES:
            raise ValueError(f"unknown shape {self.shape!r}; expected one of {list(SHAPE_NAMES)}")
        if self.size is not None and self.size not in SIZE_NAMES:
            raise ValueError(f"unknown size {self.size!r}; expected one of {list(SIZE_NAMES)} or None")


def same_kind(a: ObjectDesc, b: ObjectDesc) -> bool:
    """Whether two descriptions may be one object: colour and shape equal, and size too where both give one."""
    return a.color == b.color and a.shape == b.shape and (a.size is None or b.size is None or a.size == b.size)


def object_row(pos, quat, size: float, desc: ObjectDesc, dtype: type = np.float32) -> np.ndarray:
    """One object-state row in the OBJ_FIELDS layout (float32 as observed; float64 keeps the simulator's values)."""
    row = np.zeros(OBJ_DIM, dtype=dtype)
    row[0:3] = pos
    row[3:7] = quat
    row[7] = size
    row[8] = COLOR_NAMES.index(desc.color)
    row[9] = SHAPE_NAMES.index(desc.shape)
    row[10] = 1.0
    return row


def zone_row(color: str, centre, side: float, dtype: type = np.float32) -> np.ndarray:
    """One zone row in the OBJ_FIELDS layout: a flat square of `side` (m) centred at `centre` (x, y, z).

    Zones are scene entities of the state estimate like objects (PaLM-E's object-centric state),
    so one encoder reads both; shape_id len(SHAPE_NAMES) marks the row as a zone.
    """
    if color not in COLORS:
        raise ValueError(f"unknown zone colour {color!r}; expected one of {list(COLOR_NAMES)}")
    row = np.zeros(OBJ_DIM, dtype=dtype)
    row[0:3] = centre
    row[6] = 1.0  # identity quaternion: zones are axis-aligned
    row[7] = side
    row[8] = COLOR_NAMES.index(color)
    row[9] = len(SHAPE_NAMES)
    row[10] = 1.0
    return row


def descs_from_rows(rows: np.ndarray) -> list[ObjectDesc]:
    """The ObjectDesc of each present object row (OBJ_FIELDS layout), read back from the state estimate alone.

    A row's size word is the SIZE_NAMES entry whose edge (SIZE_EDGES) is within 2.5 mm of its
    `size` column, else none (other worlds' blocks). Zone rows are refused: they are not objects.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != OBJ_DIM:
        raise ValueError(f"object rows must be (n, {OBJ_DIM}) in the OBJ_FIELDS layout, got shape {rows.shape}")
    out = []
    for row in rows[rows[:, -1] > 0.5]:
        color, shape = round(float(row[8])), round(float(row[9]))
        if not (0 <= color < len(COLOR_NAMES) and 0 <= shape < len(SHAPE_NAMES)):
            raise ValueError(f"object row has colour id {color} / shape id {shape}; expected ids below "
                             f"{len(COLOR_NAMES)} / {len(SHAPE_NAMES)} (a zone row is not an object)")
        size = min(SIZE_NAMES, key=lambda s: abs(SIZE_EDGES[s] - row[7]))
        out.append(ObjectDesc(COLOR_NAMES[color], SHAPE_NAMES[shape], size if abs(SIZE_EDGES[size] - row[7]) < 0.0025 else None))
    return out


def zone_colors_from_rows(rows: np.ndarray) -> list[str]:
    """The colour of each present zone row (catalogue.zone_row layout), in row order, each colour once: the target
    zones a state estimate shows. Rows that are not zone rows (an object's shape id) are refused."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != OBJ_DIM:
        raise ValueError(f"zone rows must be (n, {OBJ_DIM}) in the OBJ_FIELDS layout, got shape {rows.shape}")
    out: list[str] = []
    for row in rows[rows[:, -1] > 0.5]:
        color, kind = round(float(row[8])), round(float(row[9]))
        if kind != len(SHAPE_NAMES) or not 0 <= color < len(COLOR_NAMES):
            raise ValueError(f"zone row has colour id {color} / shape id {kind}; expected a colour id below "
                             f"{len(COLOR_NAMES)} and shape id {len(SHAPE_NAMES)} ({ZONE_KIND})")
        if COLOR_NAMES[color] not in out:
            out.append(COLOR_NAMES[color])
    return out
