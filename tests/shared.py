"""The one way tests find ../shared (override with FER_SHARED)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_path(*parts: str) -> Path:
    """Path under the shared data folder; fails the test with a clear message if it is missing."""
    root = Path(os.environ.get("FER_SHARED", REPO.parent / "shared"))
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"shared data missing: {path} (put the shared folder beside the repo or set FER_SHARED)")
    return path


def fer2013_csv() -> Path:
    return shared_path("data", "fer2013.csv.gz")


def hamilton_clip() -> Path:
    return shared_path("media", "short_hamilton_clip.mp4")


def faces_dir() -> Path:
    return shared_path("media", "faces")
