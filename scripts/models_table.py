"""Print the README's table of shipped models from their manifests (figures are read, never typed in)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

MODELS = Path(__file__).resolve().parents[1] / "models"


def row(manifest: dict) -> str:
    private, public = manifest["float_vs_int8"]["PrivateTest"], manifest["float_vs_int8"]["PublicTest"]
    return (f"| `{manifest['name']}` | {manifest['architecture']} | {manifest['size_bytes'] / 1024:,.0f} KiB "
            f"| {public['float_accuracy']:.2%} / {public['int8_accuracy']:.2%} "
            f"| {private['float_accuracy']:.2%} / {private['int8_accuracy']:.2%} "
            f"| {private['int8_macro_f1']:.3f} | {private['identical_predictions']:.2%} |")


def main() -> None:
    manifests = [json.loads(p.read_text()) for p in sorted(MODELS.glob("*.json"))]
    manifests = [m for m in manifests if "float_vs_int8" in m]
    if not manifests:
        sys.exit(f"{MODELS}: no manifests with metrics")
    print("| model | architecture | size | PublicTest float / int8 | PrivateTest float / int8 "
          "| PrivateTest int8 macro-F1 | float = int8 predictions (PrivateTest) |")
    print("|---|---|---|---|---|---|---|")
    for manifest in manifests:
        print(row(manifest))


if __name__ == "__main__":
    main()
