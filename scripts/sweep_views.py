"""Choose an export's view on PublicTest (never PrivateTest): float accuracy of each .keras checkpoint at each
central crop and blur, with its mirror averaged, and of all the checkpoints' scores averaged, as a Markdown table.

    python scripts/sweep_views.py --data fer2013.csv.gz --crops 47,48 --blurs 0,0.5 runs/x/best.keras runs/x/last.keras
"""

import argparse
import os
import sys
from itertools import product
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from edge.errors import UserError  # noqa: E402
from trainer import data as fer_data  # noqa: E402
from trainer.evaluate import check_view, predict  # noqa: E402

View = tuple[int, float]  # central crop in pixels, then Gaussian blur in pixels


def sweep(checkpoints: list[Path], data: Path, views: list[View]) -> list[str]:
    faces = fer_data.load(data).split("PublicTest")
    names = [f"{crop}" + (f" blur {blur:g}" if blur else "") for crop, blur in views]
    rows = [f"| checkpoint | {' | '.join(names)} |", "|---" * (len(views) + 1) + "|"]
    scores = {(path, view): predict(path, faces.images, flip_average=True, center_crop=view[0], blur=view[1])
              for path in checkpoints for view in views}

    def accuracy(result: np.ndarray) -> str:
        return f"{100 * np.mean(result.argmax(axis=1) == faces.labels):.2f}"

    for path in checkpoints:
        rows.append(f"| {path} | {' | '.join(accuracy(scores[path, view]) for view in views)} |")
    if len(checkpoints) > 1:
        averaged = [accuracy(np.mean([scores[path, view] for path in checkpoints], axis=0)) for view in views]
        rows.append(f"| all averaged | {' | '.join(averaged)} |")
    return rows


def views(crops: str, blurs: str) -> list[View]:
    """Every central crop with every blur, each checked against the views an export can hold."""
    try:
        pairs = list(product((int(c) for c in crops.split(",")), (float(b) for b in blurs.split(","))))
    except ValueError:
        raise UserError(f"--crops/--blurs: expected comma-separated numbers, got {crops!r} and {blurs!r}") from None
    for crop, blur in pairs:
        check_view(crop, blur, flags=("--crops", "--blurs"))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--crops", default="45,46,47,48", help="comma-separated central crops, 24-48 px")
    parser.add_argument("--blurs", default="0", help="comma-separated Gaussian blurs, 0-2 px (0: none)")
    args = parser.parse_args()
    try:
        print("\n".join(sweep(args.checkpoints, args.data, views(args.crops, args.blurs))))
    except UserError as exc:
        sys.exit(f"sweep_views: {exc}")


if __name__ == "__main__":
    main()
