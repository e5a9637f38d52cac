"""Choose an export's view on PublicTest (never PrivateTest): float accuracy of each .keras checkpoint at each
central crop, with its mirror averaged, and of all the checkpoints' scores averaged, as a Markdown table.

    python scripts/sweep_views.py --data fer2013.csv.gz --crops 45,46,47,48 runs/x/best.keras runs/x/last.keras
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from edge.errors import UserError  # noqa: E402
from trainer import data as fer_data  # noqa: E402
from trainer.evaluate import predict  # noqa: E402


def sweep(checkpoints: list[Path], data: Path, crops: list[int]) -> list[str]:
    faces = fer_data.load(data).split("PublicTest")
    rows = [f"| checkpoint | {' | '.join(map(str, crops))} |", "|---" * (len(crops) + 1) + "|"]
    scores = {(path, crop): predict(path, faces.images, flip_average=True, center_crop=crop)
              for path in checkpoints for crop in crops}

    def accuracy(result: np.ndarray) -> str:
        return f"{100 * np.mean(result.argmax(axis=1) == faces.labels):.2f}"

    for path in checkpoints:
        rows.append(f"| {path} | {' | '.join(accuracy(scores[path, crop]) for crop in crops)} |")
    if len(checkpoints) > 1:
        averaged = [accuracy(np.mean([scores[path, crop] for path in checkpoints], axis=0)) for crop in crops]
        rows.append(f"| all averaged | {' | '.join(averaged)} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--crops", default="45,46,47,48", help="comma-separated central crops, 24-48 px")
    args = parser.parse_args()
    crops = [int(crop) for crop in args.crops.split(",") if crop.strip().isdigit()]
    if len(crops) != len(args.crops.split(",")) or not all(24 <= crop <= 48 for crop in crops):
        sys.exit(f"sweep_views: --crops: expected comma-separated pixel counts 24-48, got {args.crops!r}")
    try:
        print("\n".join(sweep(args.checkpoints, args.data, crops)))
    except UserError as error:
        sys.exit(f"sweep_views: {error}")


if __name__ == "__main__":
    main()
