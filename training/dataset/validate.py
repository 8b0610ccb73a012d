"""`validate(root)`: the full report behind `palme-dataset validate` (the same checks the training loader runs)."""

from __future__ import annotations

from pathlib import Path

from training.dataset.checks import REQUIRED_INFO, Problem, scan

__all__ = ["REQUIRED_INFO", "validate"]


def validate(root: str | Path, images: bool = True) -> list[Problem]:
    """Every problem found in the folder (see `checks.scan`); NotADatasetError when it is not a dataset at all.

    A folder with no `error` problem loads and trains: `LogDataset` runs these same checks when it opens one.
    """
    return scan(root, images=images)[1]
