"""Small real subsets of FER-2013, written as plain CSV files that tests can afford to load."""

from __future__ import annotations

import gzip
from pathlib import Path

from tests.shared import fer2013_csv


def write_subset(path: Path, per_split: dict[str, int]) -> Path:
    """Copy the header and the first N rows of each split, in file order, from the real FER-2013 file."""
    left = dict(per_split)
    with gzip.open(fer2013_csv(), "rt", newline="") as source, open(path, "w", newline="") as target:
        target.write(source.readline())
        for line in source:
            usage = line.rstrip("\r\n").rsplit(",", 1)[-1]
            if left.get(usage, 0) > 0:
                target.write(line)
                left[usage] -= 1
            if not any(left.values()):
                break
    return path
