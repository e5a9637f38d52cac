"""Measure candidate teacher sets on PublicTest (never PrivateTest): each float network at its own view, how often
each pair agrees, and the best set of each size by the accuracy of its averaged scores, as Markdown tables.

    python scripts/teacher_sets.py --data fer2013.csv.gz okd2.keras@47,0.5 wide15.keras@48,0.5 indep.keras@48
"""

import argparse
import os
import sys
from itertools import combinations
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from edge.errors import UserError  # noqa: E402
from trainer import data as fer_data  # noqa: E402
from trainer.evaluate import check_view, predict  # noqa: E402


def network(text: str) -> tuple[Path, int, float]:
    """`path@crop[,blur]`: a .keras checkpoint and the view it is scored at, mirror included."""
    path, _, view = text.rpartition("@")
    crop, _, blur = view.partition(",")
    try:
        crop_px, blur_px = int(crop), float(blur or 0)
        check_view(crop_px, blur_px, flags=("crop", "blur"))
    except (ValueError, UserError) as exc:
        raise argparse.ArgumentTypeError(f"expected PATH@CROP[,BLUR], got {text!r} ({exc})") from None
    if not path:
        raise argparse.ArgumentTypeError(f"expected PATH@CROP[,BLUR], got {text!r} (no path)")
    return Path(path), crop_px, blur_px


def tables(networks: list[tuple[Path, int, float]], data: Path) -> list[str]:
    faces = fer_data.load(data).split("PublicTest")
    names = [f"{p.parent.name}/{p.stem}" if p.stem in ("best", "last") else p.stem for p, _, _ in networks]
    scores = [predict(path, faces.images, flip_average=True, center_crop=crop, blur=blur)
              for path, crop, blur in networks]
    classes = [score.argmax(axis=1) for score in scores]

    def accuracy(members: tuple[int, ...]) -> float:
        averaged = np.mean([scores[i] for i in members], axis=0)
        return 100 * float(np.mean(averaged.argmax(axis=1) == faces.labels))

    rows = ["| network (crop, blur) | PublicTest |", "|---|---|"]
    rows += [f"| {names[i]} ({crop}, {blur:g}) | {accuracy((i,)):.2f} |" for i, (_, crop, blur) in enumerate(networks)]
    rows += ["", "| pair | same class |", "|---|---|"]
    rows += [f"| {names[a]} + {names[b]} | {100 * np.mean(classes[a] == classes[b]):.1f} % |"
             for a, b in combinations(range(len(names)), 2)]
    rows += ["", "| size | best set | PublicTest |", "|---|---|---|"]
    for size in range(2, len(names) + 1):
        best = max(combinations(range(len(names)), size), key=accuracy)
        rows.append(f"| {size} | {' + '.join(names[i] for i in best)} | {accuracy(best):.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("networks", nargs="+", type=network, help="PATH@CROP[,BLUR], e.g. okd2.keras@47,0.5")
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    try:
        print("\n".join(tables(args.networks, args.data)))
    except UserError as exc:
        sys.exit(f"teacher_sets: {exc}")


if __name__ == "__main__":
    main()
