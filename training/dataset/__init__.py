"""Demonstration logs in the LeRobotDataset v3.0 layout: writer, reader, checks."""

from __future__ import annotations

from training.dataset.checks import DatasetError, Problem, scan
from training.dataset.episode import EncodedEpisode, EpisodeData, Frame, PlanStep, decode_png, encode_episode
from training.dataset.reader import EpisodeLog, LogDataset
from training.dataset.schema import (
    CODEBASE_VERSION,
    SCHEMA_VERSION,
    NotADatasetError,
    load_info,
    make_features,
)
from training.dataset.validate import validate
from training.dataset.writer import DatasetWriter, WriterConflictError

__all__ = [
    "CODEBASE_VERSION",
    "SCHEMA_VERSION",
    "DatasetError",
    "DatasetWriter",
    "EncodedEpisode",
    "EpisodeData",
    "EpisodeLog",
    "Frame",
    "LogDataset",
    "NotADatasetError",
    "PlanStep",
    "Problem",
    "WriterConflictError",
    "decode_png",
    "encode_episode",
    "load_info",
    "make_features",
    "scan",
    "validate",
]
