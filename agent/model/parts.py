"""Model parts chosen by id: vision backbones, projectors and the state encoders.

Shapes: frames (N, H, W, 3) uint8 -> pixel values (N, 3, S, S) -> vision tokens (N, n, Dv) ->
projector -> (N, n, D); object rows (N, OBJ_DIM) -> (N, k, D); robot vectors (N, ROBOT_DIM) -> (N, 1, D).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, ViTConfig, ViTModel

from agent.model.checkpoint_checks import (
    LOCAL_VISION_TYPES,
    MIN_PIXEL_STD,
    check_folder,
    check_model_config,
    read_json_object,
    refuse_code,
)
from envs.catalogue import COLOR_NAMES, OBJ_DIM, OBJ_FIELDS, ROBOT_DIM, ROBOT_FIELDS, SHAPE_NAMES

SAFE = {"trust_remote_code": False, "local_files_only": True}  # every transformers loader: no code, no network
ROLES = ("llm", "vision", "projector", "state")  # what a module is to training stages (config.STAGE_ROLES)


def with_role(module: nn.Module, role: str) -> nn.Module:
    """`module`, marked as a part of `role` (ROLES): `PalmE.set_stage` trains or freezes it with its role.

    Our own module classes declare a class attribute `role` instead; a library's module gets it here.
    """
    if role not in ROLES:
        raise ValueError(f"unknown module role {role!r}; known roles: {list(ROLES)}")
    module.role = role
    return module


def role_of(module: nn.Module) -> str | None:
    """The role a module declares (None: its parameters belong to an enclosing module's role)."""
    role = getattr(module, "role", None)
    return role if isinstance(role, str) else None


# ---------------------------------------------------------------------------------------------
# vision


def _scratch_vit(cfg: Any, saved: dict | None) -> nn.Module:
    """A small ViT trained from scratch (its shape comes entirely from the VisionConfig)."""
    vcfg = ViTConfig(
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        hidden_size=cfg.hidden,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        intermediate_size=cfg.intermediate,
    )
    return ViTModel(vcfg, add_pooling_layer=False)


def _vision_config(path: str) -> Any:
    """The vision config of a checkpoint dir: the vision tower's own for CLIP/SigLIP-style dual models.

    The folder is checked first: no JSON file may name code (`refuse_code`), and config.json must
    describe a ViT, SigLIP or CLIP model (LOCAL_VISION_TYPES). Raises ValueError naming the file and key.
    """
    folder = check_folder(path, ["config.json"], "vision_path")
    refuse_code(folder)
    check_model_config(read_json_object(folder / "config.json"), str(folder / "config.json"), "config",
                       LOCAL_VISION_TYPES)
    conf = AutoConfig.from_pretrained(folder, **SAFE)
    return getattr(conf, "vision_config", None) or conf


def _local_vision(cfg: Any, saved: dict | None) -> nn.Module:
    """A pretrained vision tower from a local dir; from `saved` (its config) when reloading ours."""
    if saved is not None:  # checked by checkpoint_checks.read_checkpoint_config
        return AutoModel.from_config(AutoConfig.for_model(**saved), trust_remote_code=False)
    return AutoModel.from_pretrained(cfg.path, config=_vision_config(cfg.path), **SAFE)


VISION_BACKBONES: dict[str, Callable[[Any, dict | None], nn.Module]] = {
    "scratch": _scratch_vit,
    "local": _local_vision,
}


def make_vision(cfg: Any, saved: dict | None = None) -> nn.Module:
    """The vision backbone named by `cfg.backbone` (cfg: a VisionConfig); `saved`: a checkpoint's vision_config."""
    if cfg.backbone not in VISION_BACKBONES:
        raise ValueError(f"unknown vision backbone {cfg.backbone!r}; known: {sorted(VISION_BACKBONES)}")
    return VISION_BACKBONES[cfg.backbone](cfg, saved)


def local_image_settings(path: str) -> dict[str, Any]:
    """image_size / image_mean / image_std a pretrained vision checkpoint was trained with.

    Raises ValueError naming preprocessor_config.json and the key when a value is not 3 numbers in
    [0, 1] (std at least MIN_PIXEL_STD), or the config's image_size is not a positive integer.
    """
    size = _vision_config(path).image_size
    if type(size) is not int or size < 1:
        raise ValueError(f"{Path(path) / 'config.json'}: image_size must be a positive integer, got {size!r}")
    out: dict[str, Any] = {"image_size": size}
    pre = Path(path) / "preprocessor_config.json"
    if pre.is_file():
        data = read_json_object(pre)
        for key in ("image_mean", "image_std"):
            if key in data:
                values = data[key]
                low = MIN_PIXEL_STD if key == "image_std" else 0.0
                if (not isinstance(values, list) or len(values) != 3
                        or not all(type(v) in (int, float) and low <= v <= 1 for v in values)):
                    raise ValueError(f"{pre}: {key} must be 3 numbers in [{low:g}, 1] (R, G, B statistics of [0, 1] "
                                     f"pixels), got {json.dumps(values)[:60]}")
                out[key] = [float(v) for v in values]
    return out


def check_image(image: Any) -> np.ndarray:
    """The frame as an (H, W, 3) uint8 array, or a ValueError that says what came."""
    if not isinstance(image, np.ndarray):
        msg = f"image must be a numpy (H, W, 3) uint8 array, got {type(image).__name__}"
        raise ValueError(msg)  # noqa: TRY004 - house rule: bad input is a ValueError
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be an (H, W, 3) uint8 array, got shape {image.shape} dtype {image.dtype}"
        )
    return image


class ImageEncoder(nn.Module):
    """Frames -> vision tokens: resize and normalise inside the model, then the backbone."""

    role = "vision"

    def __init__(self, backbone: nn.Module, image_size: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.backbone = backbone
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def width(self) -> int:
        """Dv, the width of the backbone's tokens."""
        return int(self.backbone.config.hidden_size)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(H, W, 3) uint8 frames of any size -> (N, 3, S, S) normalised float pixels."""
        out = []
        for image in images:
            x = torch.tensor(check_image(image)).permute(2, 0, 1)[None].float() / 255
            if x.shape[-2:] != (self.image_size, self.image_size):
                x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
            out.append(x)  # (1, 3, S, S)
        pixels = torch.cat(out) if out else torch.zeros(0, 3, self.image_size, self.image_size)
        return (pixels - self.mean.cpu()) / self.std.cpu()  # (N, 3, S, S)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> (N, n, Dv)."""
        return self.backbone(pixel_values=pixels).last_hidden_state


# ---------------------------------------------------------------------------------------------
# projectors


PROJECTORS: dict[str, Callable[[int, int], nn.Module]] = {
    "linear": lambda d_in, d_out: nn.Linear(d_in, d_out),  # PaLM-E's affine map
    "mlp": lambda d_in, d_out: nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out)),
}


def make_projector(kind: str, d_in: int, d_out: int) -> nn.Module:
    """The projector named `kind`, mapping width d_in to d_out."""
    if kind not in PROJECTORS:
        raise ValueError(f"unknown projector {kind!r}; known: {sorted(PROJECTORS)}")
    return PROJECTORS[kind](d_in, d_out)


# ---------------------------------------------------------------------------------------------
# state


def _default_stats(fields: Sequence[str]) -> tuple[list[float], list[float]]:
    """Scale guesses per field (metres, quaternions, radians); `fit_state_stats` uses data instead."""
    mean, std = [], []
    for f in fields:
        if f in ("x", "y", "ee_x", "ee_y"):
            mean.append(0.0), std.append(0.3)
        elif f in ("z", "ee_z"):
            mean.append(0.1), std.append(0.1)
        elif f == "size" or f == "gripper_opening":
            mean.append(0.04), std.append(0.03)
        else:
            mean.append(0.0), std.append(1.0)
    return mean, std


class VectorEncoder(nn.Module):
    """Normalised vectors (categorical columns one-hot) -> MLP -> `n_tokens` LLM tokens each."""

    role = "state"

    def __init__(
        self, fields: Sequence[str], categorical: dict[str, int], hidden: int, width: int, n_tokens: int
    ):
        super().__init__()
        self.cat_cols = [fields.index(f) for f in categorical]
        self.cat_sizes = list(categorical.values())
        self.num_cols = [i for i, f in enumerate(fields) if f not in categorical]
        mean, std = _default_stats([fields[i] for i in self.num_cols])
        self.register_buffer(
            "mean", torch.tensor(mean)
        )  # saved with the weights: normalisation travels along
        self.register_buffer("std", torch.tensor(std))
        d_in = len(self.num_cols) + sum(self.cat_sizes)
        self.n_tokens, self.width = n_tokens, width
        self.mlp = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, n_tokens * width))

    def features(self, rows: torch.Tensor) -> torch.Tensor:
        """(N, F) raw rows -> (N, d_in) normalised numbers and one-hot categories."""
        parts = [(rows[:, self.num_cols] - self.mean) / self.std]
        for col, size in zip(self.cat_cols, self.cat_sizes):
            parts.append(F.one_hot(rows[:, col].round().long().clamp(0, size - 1), size).to(rows.dtype))
        return torch.cat(parts, dim=-1)  # (N, d_in)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """(N, F) -> (N, n_tokens, D)."""
        return self.mlp(self.features(rows)).view(rows.shape[0], self.n_tokens, self.width)

    def set_stats(self, rows: torch.Tensor) -> None:
        """Normalisation statistics from data rows (N, F): per-field mean and std (floored)."""
        num = rows[:, self.num_cols].double()
        self.mean.copy_(num.mean(0).to(self.mean.dtype))
        self.std.copy_(num.std(0, correction=0).clamp_min(1e-3).to(self.std.dtype))


class ImageTokens(nn.Module):
    """Frames -> LM tokens: the vision backbone (role "vision"), then the projector (role "projector")."""

    def __init__(self, vision: ImageEncoder, projector: nn.Module) -> None:
        super().__init__()
        self.vision = vision
        self.projector = with_role(projector, "projector")

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> (N, n, D)."""
        return self.projector(self.vision(pixels))


def object_encoder(hidden: int, width: int, n_tokens: int) -> VectorEncoder:
    """Object rows (OBJ_FIELDS layout) -> k tokens; colour and shape ids are one-hot."""
    categorical = {"color_id": len(COLOR_NAMES), "shape_id": len(SHAPE_NAMES)}
    assert len(OBJ_FIELDS) == OBJ_DIM
    return VectorEncoder(OBJ_FIELDS, categorical, hidden, width, n_tokens)


def robot_encoder(hidden: int, width: int) -> VectorEncoder:
    """The robot vector (ROBOT_FIELDS layout) -> 1 token."""
    assert len(ROBOT_FIELDS) == ROBOT_DIM
    return VectorEncoder(ROBOT_FIELDS, {}, hidden, width, 1)
